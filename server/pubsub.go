package server

import (
	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/loop"
)

// pubsubApp is the placeholder for the pub/sub protocol, which lands with its own issue:
// until then an upgrade under -app pubsub is refused with 501 so a client is never left
// connected to a protocol that does nothing.
type pubsubApp struct{ echoApp }

var errPubSubPending = &codec.HandshakeError{Status: 501, Reason: "bad_request", Msg: "-app pubsub is not implemented yet; run with -app echo"}

func (pubsubApp) Accept(*loop.Conn, *codec.Request) (string, []string, *codec.HandshakeError) {
	return "", nil, errPubSubPending
}
