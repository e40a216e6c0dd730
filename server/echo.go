package server

import (
	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/loop"
)

// echoApp writes every message back to its sender unchanged: the benchmark application.
type echoApp struct{}

func (echoApp) Accept(*loop.Conn, *codec.Request) (string, []string, *codec.HandshakeError) {
	return "", nil, nil
}
func (echoApp) Open(*loop.Conn)   {}
func (echoApp) Closed(*loop.Conn) {}

func (echoApp) Message(c *loop.Conn, op codec.OpCode, payload []byte) {
	c.WriteMessage(op, payload)
}
