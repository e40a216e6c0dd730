package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// hdSecret is the HS256 secret of the auth tests' servers.
const hdSecret = "test-secret-0123456789abcdef"

// hdToken signs claims with method and key; it fails the test on error.
func hdToken(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing a %s token: %v", method.Alg(), err)
	}
	return s
}

// TestAuthRejects checks that with -auth-hs256-secret every upgrade without a valid HS256
// token gets 401 with WWW-Authenticate: Bearer, counted as reason "auth".
func TestAuthRejects(t *testing.T) {
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, AuthHS256Secret: hdSecret})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("rsa key: %v", err)
	}
	now := time.Now()
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := valid()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hs256 := func(c jwt.MapClaims) string { return hdToken(t, jwt.SigningMethodHS256, []byte(hdSecret), c) }
	// A token whose signature has one bit flipped: header and claims are intact.
	parts := strings.Split(hs256(valid()), ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("decoding a signature: %v", err)
	}
	sig[0] ^= 1
	tampered := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)

	tests := []struct {
		name    string
		target  string   // request target; "/" when empty
		headers []string // extra header lines
	}{
		{name: "missing token"},
		{name: "empty bearer", headers: []string{"Authorization: Bearer "}},
		{name: "basic scheme", headers: []string{"Authorization: Basic YWxpY2U6cHc="}},
		{name: "malformed token", headers: []string{"Authorization: Bearer not.a.jwt"}},
		{name: "malformed token in query", target: "/?token=abc"},
		{name: "undecodable query", target: "/?token=%zz"},
		{name: "bad signature", headers: []string{"Authorization: Bearer " + hdToken(t, jwt.SigningMethodHS256, []byte("another-secret"), valid())}},
		{name: "tampered signature", headers: []string{"Authorization: Bearer " + tampered}},
		{name: "wrong algorithm HS512", headers: []string{"Authorization: Bearer " + hdToken(t, jwt.SigningMethodHS512, []byte(hdSecret), valid())}},
		{name: "wrong algorithm RS256", headers: []string{"Authorization: Bearer " + hdToken(t, jwt.SigningMethodRS256, rsaKey, valid())}},
		{name: "alg none", headers: []string{"Authorization: Bearer " + hdToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid())}},
		{name: "alg none in query", target: "/?token=" + url.QueryEscape(hdToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()))},
		{name: "expired beyond the leeway", headers: []string{"Authorization: Bearer " + hs256(with("exp", now.Add(-time.Minute).Unix()))}},
		{name: "not valid before a minute from now", headers: []string{"Authorization: Bearer " + hs256(with("nbf", now.Add(time.Minute).Unix()))}},
		{name: "missing sub", headers: []string{"Authorization: Bearer " + hs256(with("sub", nil))}},
		{name: "empty sub", headers: []string{"Authorization: Bearer " + hs256(with("sub", ""))}},
		// A client id is no substitute for a token.
		{name: "client id without token", target: "/?client_id=alice", headers: []string{"X-Client-Id: alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.target
			if target == "" {
				target = "/"
			}
			before := hs.Metric(t, hdUpgradeSeries("auth"))
			c, resp, err := hdUpgrade(t, nil, hs.Addr, target, tt.headers...)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if c != nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %s, want 401", resp.Status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
			}
			if got := hs.Metric(t, hdUpgradeSeries("auth")); got != before+1 {
				t.Errorf("%s = %v, want %v", hdUpgradeSeries("auth"), got, before+1)
			}
		})
	}
	if got := hs.Metric(t, "ws_connections_opened_total"); got != 0 {
		t.Errorf("ws_connections_opened_total = %v, want 0", got)
	}
}

// TestAuthIdentity checks that a valid token, in the Authorization header or in ?token=,
// admits the client with the token's sub as its identity, whatever X-Client-Id or
// ?client_id= say, and that exp within the 5 s leeway is still accepted.
func TestAuthIdentity(t *testing.T) {
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, AuthHS256Secret: hdSecret})
	tok := func(sub string, exp time.Time) string {
		return hdToken(t, jwt.SigningMethodHS256, []byte(hdSecret), jwt.MapClaims{"sub": sub, "exp": exp.Unix()})
	}
	hour := time.Now().Add(time.Hour)
	tests := []struct {
		name    string
		target  string
		headers []string
		wantID  string
	}{
		{name: "bearer header", target: "/", headers: []string{"Authorization: Bearer " + tok("alice", hour)}, wantID: "alice"},
		// The scheme is case-insensitive (RFC 9110 §11.1).
		{name: "lower-case scheme", target: "/", headers: []string{"Authorization: bearer " + tok("amy", hour)}, wantID: "amy"},
		{name: "bearer header with client id", target: "/?client_id=mallory",
			headers: []string{"Authorization: Bearer " + tok("bob", hour), "X-Client-Id: mallory"}, wantID: "bob"},
		{name: "query token", target: "/?token=" + url.QueryEscape(tok("carol", hour)), wantID: "carol"},
		{name: "query token with client id", target: "/?client_id=mallory&token=" + url.QueryEscape(tok("dave", hour)),
			headers: []string{"X-Client-Id: mallory"}, wantID: "dave"},
		{name: "no exp", target: "/", headers: []string{"Authorization: Bearer " + hdToken(t, jwt.SigningMethodHS256, []byte(hdSecret), jwt.MapClaims{"sub": "erin"})}, wantID: "erin"},
		// exp one second ago is inside DESIGN.md's 5 s clock leeway.
		{name: "expired within the leeway", target: "/", headers: []string{"Authorization: Bearer " + tok("frank", time.Now().Add(-time.Second))}, wantID: "frank"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := hdMustUpgrade(t, hs.Addr, tt.target, tt.headers...)
			m, err := c.readMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("reading welcome: %v", err)
			}
			if m.Type != "welcome" || m.ClientID != tt.wantID {
				t.Fatalf("first message = %+v, want welcome with clientId %q", m, tt.wantID)
			}
			// The identity is live: a direct send to the token's sub reaches this socket.
			resp, err := httpClient.Post(hs.Admin+"/v1/send", "application/json",
				strings.NewReader(`{"to":"`+tt.wantID+`","data":"hi"}`))
			if err != nil {
				t.Fatalf("POST /v1/send: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST /v1/send: %s", resp.Status)
			}
			if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != "direct" || string(m.Data) != `"hi"` {
				t.Fatalf("after /v1/send to %q: %+v, %v; want the direct message", tt.wantID, m, err)
			}
		})
	}
}

// TestAuthChannels checks a token's channels claim: subscriptions and publishes outside
// it get an error frame with code "forbidden" and the connection stays open.
func TestAuthChannels(t *testing.T) {
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, AuthHS256Secret: hdSecret})
	tok := hdToken(t, jwt.SigningMethodHS256, []byte(hdSecret), jwt.MapClaims{
		"sub": "reader", "exp": time.Now().Add(time.Hour).Unix(), "channels": []string{"news.*", "room:1"},
	})
	c := hdMustUpgrade(t, hs.Addr, "/", "Authorization: Bearer "+tok)
	if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != "welcome" {
		t.Fatalf("first message = %+v, %v; want welcome", m, err)
	}
	// The steps run in order on one connection; each expects one answer.
	steps := []struct {
		name        string
		send        string
		wantType    string
		wantChannel string
		wantCode    string
	}{
		{name: "sub by prefix", send: `{"op":"sub","channel":"news.eu"}`, wantType: "subscribed", wantChannel: "news.eu"},
		{name: "sub by name", send: `{"op":"sub","channel":"room:1"}`, wantType: "subscribed", wantChannel: "room:1"},
		{name: "sub outside", send: `{"op":"sub","channel":"room:2"}`, wantType: "error", wantCode: "forbidden"},
		{name: "sub to the prefix without its dot", send: `{"op":"sub","channel":"news"}`, wantType: "error", wantCode: "forbidden"},
		{name: "sub to a name extending an exact pattern", send: `{"op":"sub","channel":"room:10"}`, wantType: "error", wantCode: "forbidden"},
		{name: "pub outside", send: `{"op":"pub","channel":"room:2","data":1}`, wantType: "error", wantCode: "forbidden"},
		// Still open: a pub on an allowed channel comes back to this subscriber.
		{name: "pub inside", send: `{"op":"pub","channel":"news.eu","data":2}`, wantType: "message", wantChannel: "news.eu"},
		{name: "sub by name again", send: `{"op":"sub","channel":"room:1"}`, wantType: "subscribed", wantChannel: "room:1"},
	}
	for _, st := range steps {
		if err := c.sendJSON(st.send); err != nil {
			t.Fatalf("%s: send: %v", st.name, err)
		}
		m, err := c.readMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if m.Type != st.wantType || m.Channel != st.wantChannel || m.Code != st.wantCode {
			t.Errorf("%s: got %+v, want type %q channel %q code %q", st.name, m, st.wantType, st.wantChannel, st.wantCode)
		}
	}
	if got := hs.Metric(t, "ws_connections_active"); got != 1 {
		t.Errorf("ws_connections_active = %v, want 1", got)
	}
}

// TestAuthTokenExpires checks that a socket whose token expires while connected is closed
// with 4003 once exp plus the 5 s leeway has passed (server/auth.go: grant.expires is
// exp + clockLeeway), not before, and counted in ws_close_total{code="4003"}.
func TestAuthTokenExpires(t *testing.T) {
	// A short heartbeat keeps pings flowing, so the expiry must win over an armed ping.
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, AuthHS256Secret: hdSecret, Heartbeat: time.Second, IdleTimeout: 30 * time.Second})
	exp := jwt.NewNumericDate(time.Now().Add(2 * time.Second)) // whole seconds
	const leeway = 5 * time.Second
	closeAt := exp.Add(leeway)
	tok := hdToken(t, jwt.SigningMethodHS256, []byte(hdSecret), jwt.MapClaims{"sub": "short", "exp": exp.Unix()})
	c := hdMustUpgrade(t, hs.Addr, "/", "Authorization: Bearer "+tok)
	if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != "welcome" {
		t.Fatalf("first message = %+v, %v; want welcome", m, err)
	}
	if err := c.subscribe("before.expiry"); err != nil {
		t.Fatalf("sub before expiry: %v", err)
	}
	before := hs.Metric(t, hdCloseSeries(codec.CloseTokenExpired))

	// readMsg answers pings; anything else before the close is a failure.
	_, err := c.readMsg(time.Until(closeAt) + hdSlack)
	got := time.Now()
	var ce *hdCloseError
	if !errors.As(err, &ce) {
		t.Fatalf("want close 4003 about %v after exp, got %v", leeway, err)
	}
	if ce.code != codec.CloseTokenExpired {
		t.Fatalf("close code = %d (%q), want 4003", ce.code, ce.reason)
	}
	// 50 ms of tolerance for clock reads on two sides of one machine.
	if early := closeAt.Sub(got); early > 50*time.Millisecond {
		t.Errorf("closed %v before exp + leeway", early)
	}
	t.Logf("closed %v after exp + leeway", got.Sub(closeAt))
	_ = c.sendClose(codec.CloseTokenExpired)
	if _, err := c.expectEnd(10 * time.Second); err != nil {
		t.Errorf("after the close reply: %v", err)
	}
	hs.WaitMetricFunc(t, hdCloseSeries(codec.CloseTokenExpired), func(v float64) bool { return v == before+1 })
}
