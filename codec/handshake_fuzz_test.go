package codec

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"testing"
)

// FuzzHandshake feeds arbitrary bytes to ParseRequest, whole and split at a fuzzed point as
// the network may deliver them, under a fuzzed limit. It checks that ParseRequest never
// panics, that n is consistent with the input, that the head alone parses the same as the
// head with anything after it, that a prefix is incomplete until it holds the whole head or
// reaches the limit, and that the responses for the outcome are well-formed HTTP.
func FuzzHandshake(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in), uint16(len(tc.in)/2), uint16(0))
	}
	for _, in := range handshakeTestdata(f) {
		f.Add(in, uint16(len(in)/3), uint16(0))
		f.Add(append(in, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"...), uint16(len(in)), uint16(len(in)))
		f.Add(in, uint16(10), uint16(len(in)-1))
	}
	f.Add([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), uint16(3), uint16(8))
	f.Add([]byte(minimalRequest+minimalRequest), uint16(len(minimalRequest)), uint16(0))

	f.Fuzz(func(t *testing.T, b []byte, split, limit uint16) {
		limitBytes := int(limit) // 0 means DefaultMaxHeaderBytes
		effMax := limitBytes
		if effMax == 0 {
			effMax = DefaultMaxHeaderBytes
		}
		if validFieldValue(b) != validFieldBytes(b) {
			t.Fatalf("validFieldValue(%q) disagrees with validFieldBytes", b)
		}
		var r Request
		n, err := ParseRequest(b, limitBytes, &r)
		got := requestFieldsOf(&r)

		var he *HandshakeError
		switch {
		case err == ErrIncomplete:
			if n != 0 || len(b) >= effMax || bytes.Contains(b, []byte("\r\n\r\n")) {
				t.Fatalf("ErrIncomplete with n %d, len %d, limit %d", n, len(b), effMax)
			}
		case errors.Is(err, ErrHeadTooLarge):
			if n != 0 || len(b) < effMax || bytes.Contains(b[:effMax], []byte("\r\n\r\n")) {
				t.Fatalf("431 with n %d, len %d, limit %d", n, len(b), effMax)
			}
		case err == nil || errors.As(err, &he):
			if n < 4 || n > len(b) || n > effMax || string(b[n-4:n]) != "\r\n\r\n" ||
				bytes.Contains(b[:n-1], []byte("\r\n\r\n")) {
				t.Fatalf("n = %d for %q (limit %d): not the end of the first CRLFCRLF", n, b, effMax)
			}
			if err != nil && (he.Status != 400 && he.Status != 405 && he.Status != 426) {
				t.Fatalf("unexpected status %d", he.Status)
			}
			// The head alone parses the same: nothing after n was read.
			var r2 Request
			n2, err2 := ParseRequest(b[:n:n], limitBytes, &r2)
			if n2 != n || err2 != err || requestFieldsOf(&r2) != got {
				t.Fatalf("head alone: %d, %v, %+v; whole: %d, %v, %+v", n2, err2, requestFieldsOf(&r2), n, err, got)
			}
			checkResponse(t, err, &r)
		default:
			t.Fatalf("unexpected error %T %v", err, err)
		}

		// A prefix, as a network split would deliver it first: incomplete until it holds
		// the head, then the same result; without a head, incomplete until the limit.
		k := int(split) % (len(b) + 1)
		var rp Request
		np, errp := ParseRequest(b[:k:k], limitBytes, &rp)
		switch {
		case n > 0 && k >= n:
			if np != n || errp != err || requestFieldsOf(&rp) != got {
				t.Fatalf("prefix %d holding the requestHead: %d, %v; whole: %d, %v", k, np, errp, n, err)
			}
		case n == 0 && err != ErrIncomplete && k >= effMax:
			if np != 0 || !errors.Is(errp, ErrHeadTooLarge) {
				t.Fatalf("prefix %d at limit %d: %d, %v, want 431", k, effMax, np, errp)
			}
		default:
			if np != 0 || errp != ErrIncomplete {
				t.Fatalf("prefix %d of %d: %d, %v, want ErrIncomplete (whole: %d, %v)", k, len(b), np, errp, n, err)
			}
		}
	})
}

// checkResponse asserts that the response the server would write for a parse outcome is one
// well-formed HTTP response.
func checkResponse(t *testing.T, err error, r *Request) {
	t.Helper()
	var out []byte
	want := http.StatusSwitchingProtocols
	if he := (*HandshakeError)(nil); errors.As(err, &he) {
		out, want = AppendReject(nil, he), he.Status
	} else {
		out = AppendAccept(nil, r, string(r.Protocol))
	}
	br := bufio.NewReader(bytes.NewReader(out))
	resp, rerr := http.ReadResponse(br, nil)
	if rerr != nil {
		t.Fatalf("ReadResponse(%q): %v", out, rerr)
	}
	if resp.StatusCode != want {
		t.Fatalf("status = %d, want %d", resp.StatusCode, want)
	}
	if want == http.StatusSwitchingProtocols && resp.Header.Get("Sec-WebSocket-Accept") == "" {
		t.Fatalf("no Sec-WebSocket-Accept in %q", out)
	}
}
