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

var (
	errOrigin   = &codec.HandshakeError{Status: 403, Reason: "origin", Msg: "origin not allowed"}
	errCapacity = &codec.HandshakeError{Status: 503, Reason: "capacity", Msg: "server at capacity"}
	// retryAfter tells a refused client to come back after a second rather than at once.
	retryAfter = []string{"Retry-After: 1"}
)

func (g *gate) Accept(c *loop.Conn, req *codec.Request) (string, []string, *codec.HandshakeError) {
	// A request without Origin is a non-browser client; cross-site hijacking needs a browser.
	if len(g.origins) > 0 && len(req.Origin) > 0 && !g.originAllowed(req.Origin) {
		return "", nil, errOrigin
	}
	// Active is read across loops without coordination, so a burst spread over several
	// loops may overshoot the limit by at most one connection per loop.
	if g.maxConns > 0 && g.active() >= g.maxConns {
		return "", retryAfter, errCapacity
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
