package server

import (
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsreactor/wsreactor/codec"
)

// clockLeeway is the clock skew tolerated on exp and nbf (DESIGN.md: at most 5 s).
const clockLeeway = 5 * time.Second

// claims is what a client token carries: the standard claims (sub is the identity) and
// the channel patterns the client may subscribe to and publish on.
type claims struct {
	jwt.RegisteredClaims
	Channels *[]string `json:"channels,omitempty"`
}

// grant is a verified token's content.
type grant struct {
	identity string
	patterns []string // nil with restricted false: any channel
	limited  bool     // the token had a channels claim
	expires  time.Time
}

// authenticator verifies HS256 JWTs at the upgrade. Safe for concurrent use.
type authenticator struct {
	secret []byte
	parser *jwt.Parser
}

func newAuthenticator(secret string) *authenticator {
	return &authenticator{
		secret: []byte(secret),
		// Only HS256: a token signed otherwise, or with "none", is refused before its
		// signature is even looked at.
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(clockLeeway)),
	}
}

var errAuth = &codec.HandshakeError{Status: 401, Reason: "auth", Msg: "missing or invalid token"}

// authHeaders goes with every 401 (RFC 6750).
var authHeaders = []string{`WWW-Authenticate: Bearer realm="wsreactor"`}

// bearerToken returns the token of an "Authorization: Bearer <token>" value. The scheme
// is case-insensitive (RFC 9110 §11.1); an empty token is none.
func bearerToken(authorization string) (string, bool) {
	scheme, token, ok := strings.Cut(authorization, " ")
	return token, ok && token != "" && strings.EqualFold(scheme, "Bearer")
}

// verify finds the token (Authorization: Bearer, else ?token= for browsers, which cannot set
// headers on a WebSocket) and checks signature, algorithm, exp/nbf and sub.
func (a *authenticator) verify(req *codec.Request) (*grant, error) {
	token, ok := bearerToken(string(req.Authorization))
	if !ok {
		raw, found := req.QueryParam("token")
		if !found {
			return nil, errors.New("no token")
		}
		var err error
		if token, err = url.QueryUnescape(string(raw)); err != nil {
			return nil, err
		}
	}
	var c claims
	if _, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil }); err != nil {
		return nil, err
	}
	if !validIdentity(c.Subject) {
		return nil, errors.New("token has no usable sub")
	}
	g := &grant{identity: c.Subject}
	if c.ExpiresAt != nil {
		g.expires = c.ExpiresAt.Add(clockLeeway)
	}
	if c.Channels != nil {
		g.limited, g.patterns = true, *c.Channels
	}
	return g, nil
}

// allows reports whether the grant covers channel: a pattern is a channel name, or a
// prefix ending in '*' that matches every channel starting with it ("*" matches all).
func (g *grant) allows(channel string) bool {
	if g == nil || !g.limited {
		return true
	}
	for _, p := range g.patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(channel, prefix) {
				return true
			}
		} else if p == channel {
			return true
		}
	}
	return false
}
