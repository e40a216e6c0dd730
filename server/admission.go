package server

import (
	"strings"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/loop"
)

// gate is the admission check in front of the application: origin (403), then capacity
// (503), then the token (401), in DESIGN.md's order; the wrapped App then sees only admitted requests. Its
// methods run on event loops.
type gate struct {
	loop.App
	origins  []string // lower-cased; empty means any
	maxConns int64    // 0 means no limit
	active   func() int64
	auth     *authenticator // nil when -auth-hs256-secret is unset
}

var errOrigin = &codec.HandshakeError{Status: 403, Reason: "origin", Msg: "origin not allowed"}

func (g *gate) Accept(c *loop.Conn, req *codec.Request) (string, []string, *codec.HandshakeError) {
	// A request without Origin is a non-browser client; cross-site hijacking needs a browser.
	if len(g.origins) > 0 && len(req.Origin) > 0 && !g.originAllowed(req.Origin) {
		return "", nil, errOrigin
	}
	// A full server refuses before the token is checked, in DESIGN.md's order and without
	// the signature's cost. This read is not exact across loops: the loop's own reservation
	// (loop.Config.MaxConns), made before the 101 is written, is what holds the limit.
	if g.maxConns > 0 && g.active() >= g.maxConns {
		return "", loop.RetryAfter, loop.ErrCapacity
	}
	if g.auth != nil {
		grant, err := g.auth.verify(req)
		if err != nil {
			return "", authHeaders, errAuth
		}
		// The token's sub is the identity; X-Client-Id and ?client_id= are ignored.
		c.Value = &client{id: grant.identity, grant: grant}
		c.ExpireAt(grant.expires)
	}
	return g.App.Accept(c, req)
}

func (g *gate) originAllowed(origin []byte) bool {
	for _, o := range g.origins {
		if o == "*" || strings.EqualFold(o, string(origin)) {
			return true
		}
	}
	return false
}
