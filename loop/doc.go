// Package loop is wsreactor's gnet event handler: it turns raw TCP connections into
// WebSocket connections and keeps them honest, with no goroutine per socket.
//
// # Threading model
//
// gnet runs a fixed number of event loops, each a goroutine that owns an epoll instance and
// every connection accepted onto it. Each loop has one shard (type shard): its connection
// registry, its timing wheel, its scratch buffers. A Conn, its shard and its timer are
// touched only on that loop's goroutine: from a gnet callback (OnOpen, OnTraffic, OnClose)
// or from work posted to the loop with gnet.EventLoop.Execute. Nothing in a shard is locked.
//
// Other goroutines reach connections only by posting work to loops: Loop.Post and
// Loop.PostFrame run a function on one loop (an App's fan-out hands each interested loop one
// prebuilt frame, never one post per socket), in a per-loop FIFO bounded by count and bytes
// so a fast publisher cannot grow the heap; Loop.PostControl is the unbounded path for
// small control work. The tick goroutine (gnet's OnTick, which runs on a goroutine of its
// own, not on a loop) wakes every Config.Tick, on whole multiples of it since the Unix
// epoch, so that every process on a host ticks at the same instants and their pings leave
// together, and posts a wheel advance to each loop that has something due: the shard
// publishes when that is (wakeAt, from timerwheel's Next), so a loop with no deadline near
// is not woken at all. Counters read from other goroutines are atomics.
//
// # Connection lifecycle
//
// A connection starts in the handshake state with one timer armed for the handshake
// deadline. Request bytes accumulate in gnet's inbound buffer until the head is complete;
// codec validates it and the loop answers 101 or an HTTP error. Bytes pipelined after the
// request (a first frame) are decoded at once. Once open, the same timer becomes the
// heartbeat: it fires at the next ping time or the idle deadline, whichever is first, so
// every live socket has exactly one timer. Reading a frame costs no wheel operation: the
// deadline moves lazily when the timer fires. A server-initiated close sends its close frame
// and waits Config.CloseTimeout for the peer's reply before closing the TCP connection;
// zombies and slow consumers are closed at once (their close frame is best effort).
//
// # Memory
//
// An idle connection owns no buffers: read buffers are gnet's per-loop buffer, a fragmented
// message is reassembled only while in flight, and the encode scratch is per loop. A Conn
// is 112 bytes (a 40-byte timer, whose value is the gnet connection, and an 8-byte decoder
// included; loop/size_test.go guards it); gnet adds about 365 bytes per connection of its own (its conn object, the peer's
// address twice, its fd table).
package loop
