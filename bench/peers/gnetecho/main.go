// Command gnetecho is the echo floor for the benchmarks: a bare gnet v2 TCP echo server with
// no WebSocket at all. OnTraffic takes every byte the loop has read and writes it back, so
// a raw TCP client driving it measures the server CPU per echoed message that the kernel
// and gnet's event loops cost by themselves on this machine. wsreactor's echo cost per
// message, minus this, is what the WebSocket layer (handshake state, frame parsing,
// unmasking, UTF-8 checks, timers) adds.
//
// Flags: -listen (default :8080), -loops (default GOMAXPROCS). The engine uses the same
// gnet options as wsreactor (multicore, TCP_NODELAY, SO_REUSEADDR), minus the ticker it needs for its
// timing wheel. The open-file soft limit is raised to the hard limit at start.
package main

import (
	"flag"
	"log"
	"runtime"
	"strings"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsreactor/wsreactor/bench/peers/internal/peerkit"
)

// echo is the gnet event handler; it keeps no per-connection state.
type echo struct {
	gnet.BuiltinEventEngine
}

// OnTraffic runs on the connection's event loop. The bytes from Next alias the loop's
// inbound buffer; Write either sends them at once or copies what the socket would not
// take into the connection's outbound buffer, so handing them over is safe.
func (*echo) OnTraffic(c gnet.Conn) gnet.Action {
	buf, err := c.Next(-1)
	if err != nil {
		return gnet.Close
	}
	if _, err := c.Write(buf); err != nil {
		return gnet.Close
	}
	return gnet.None
}

func main() {
	listen := flag.String("listen", ":8080", "TCP listener `address`")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops")
	flag.Parse()

	peerkit.RaiseFileLimit("gnetecho")

	addr := *listen
	if !strings.Contains(addr, "://") {
		addr = "tcp://" + addr
	}
	log.Printf("gnetecho: echo on %s with %d loops", addr, *loops)
	err := gnet.Run(&echo{}, addr,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(*loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
	)
	if err != nil {
		log.Fatalf("gnetecho: %v", err)
	}
}
