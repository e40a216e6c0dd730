package loop

import "github.com/wsreactor/wsreactor/codec"

// App is the application on top of the WebSocket layer (echo, pub/sub). Every method runs
// on the connection's event loop and must not block; bytes it is given alias loop buffers
// and are valid only until it returns (copy what must outlive the call).
type App interface {
	// Accept decides an upgrade request that codec found valid. It returns the subprotocol
	// to answer (or "") and nil to accept, or a *codec.HandshakeError to refuse with that
	// HTTP status; extra is appended to the refusal's headers (e.g. "Retry-After: 1").
	// It may set c.Value.
	Accept(c *Conn, req *codec.Request) (protocol string, extra []string, err *codec.HandshakeError)
	// Open runs after the 101 response is written.
	Open(c *Conn)
	// Message delivers one complete data message (op is OpText or OpBinary).
	Message(c *Conn, op codec.OpCode, payload []byte)
	// Closed runs once when an opened connection is gone; c must not be written to after.
	Closed(c *Conn)
}
