package loop

import (
	"time"

	"github.com/wsreactor/wsreactor/codec"
)

// Observer receives the loop's events for metrics. Its methods are called from event-loop
// goroutines, concurrently from different loops, so implementations must be safe for
// concurrent use and must not block (an atomic add is the expected cost).
type Observer interface {
	// Opened reports a completed upgrade.
	Opened()
	// Closed reports the end of an upgraded connection with the code it ended with: the
	// code the server sent, the peer's code when the peer closed first (byPeer), or 1006
	// when the TCP connection ended without a close frame.
	Closed(code codec.CloseCode, byPeer bool)
	// UpgradeFailed reports a rejected or abandoned handshake with its metric reason.
	UpgradeFailed(reason string)
	// HeartbeatRTT reports a ping-to-pong round trip.
	HeartbeatRTT(d time.Duration)
	// Received reports n complete inbound data messages.
	Received(n int)
	// Sent reports n outbound data messages written (or queued) to sockets.
	Sent(n int)
	// ZombieReaped reports a socket closed for silence (4001).
	ZombieReaped()
	// SlowConsumer reports a socket closed for holding more than SendBufferLimit (4000).
	SlowConsumer()
}

// NopObserver ignores every event; embed it to implement part of Observer.
type NopObserver struct{}

func (NopObserver) Opened()                      {}
func (NopObserver) Closed(codec.CloseCode, bool) {}
func (NopObserver) UpgradeFailed(string)         {}
func (NopObserver) HeartbeatRTT(time.Duration)   {}
func (NopObserver) Received(int)                 {}
func (NopObserver) Sent(int)                     {}
func (NopObserver) ZombieReaped()                {}
func (NopObserver) SlowConsumer()                {}
