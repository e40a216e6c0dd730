package fanout

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
)

// channelChars is every character DESIGN.md allows in a channel name.
const channelChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:@/=+."

func TestValidChannel(t *testing.T) {
	tests := []struct {
		name    string
		channel string
		want    bool
	}{
		{name: "empty", channel: "", want: false},
		{name: "one char", channel: "a", want: true},
		{name: "every allowed char", channel: "AZaz09_-:@/=+.x", want: true},
		{name: "typical", channel: "room:1", want: true},
		{name: "tokens", channel: "a.b.c", want: true},
		{name: "128 chars", channel: strings.Repeat("x", 128), want: true},
		{name: "129 chars", channel: strings.Repeat("x", 129), want: false},
		{name: "128 with dots", channel: strings.Repeat("ab.", 42) + "ab", want: true},
		{name: "leading dot", channel: ".a", want: false},
		{name: "trailing dot", channel: "a.", want: false},
		{name: "doubled dot", channel: "a..b", want: false},
		{name: "only dot", channel: ".", want: false},
		{name: "only dots", channel: "...", want: false},
		{name: "star token", channel: "a.*", want: false},
		{name: "star inside", channel: "a*b", want: false},
		{name: "gt token", channel: "a.>", want: false},
		{name: "lone gt", channel: ">", want: false},
		{name: "space", channel: "a b", want: false},
		{name: "unicode letter", channel: "café", want: false},
		{name: "NUL", channel: "a\x00", want: false},
		{name: "high byte", channel: "a\xff", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidChannel(tt.channel); got != tt.want {
				t.Fatalf("ValidChannel(%q) = %v, want %v", tt.channel, got, tt.want)
			}
		})
	}

	// Every single character: allowed in the middle iff it is in channelChars.
	for c := range 256 {
		name := "a" + string([]byte{byte(c)}) + "b"
		want := strings.IndexByte(channelChars, byte(c)) >= 0
		if got := ValidChannel(name); got != want {
			t.Errorf("ValidChannel(%q) = %v, want %v (byte %#x)", name, got, want, c)
		}
	}
}

// randomChannel returns a random valid channel name (by construction, not by ValidChannel).
func randomChannel(rng *rand.Rand) string {
	const noDot = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:@/=+"
	n := 1 + rng.IntN(MaxChannelLen)
	b := make([]byte, n)
	for i := range b {
		// About one dot in four where a dot is allowed, to get many tokens.
		if i > 0 && i < n-1 && b[i-1] != '.' && rng.IntN(4) == 0 {
			b[i] = '.'
			continue
		}
		b[i] = noDot[rng.IntN(len(noDot))]
	}
	return string(b)
}

// TestChannelSubjectLiteral checks, over random valid names, that a channel's subject is a
// literal NATS subject: no wildcard token, no whitespace, no empty token, and that the
// channel comes back from the subject unchanged.
func TestChannelSubjectLiteral(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for range 20000 {
		ch := randomChannel(rng)
		if !ValidChannel(ch) {
			t.Fatalf("generator produced %q, which ValidChannel refuses", ch)
		}
		subj := ChannelSubject(ch)
		if strings.ContainsAny(subj, "*>") {
			t.Fatalf("ChannelSubject(%q) = %q has a wildcard", ch, subj)
		}
		if strings.IndexFunc(subj, unicode.IsSpace) >= 0 || strings.ContainsAny(subj, "\x00\r\n\t ") {
			t.Fatalf("ChannelSubject(%q) = %q has whitespace", ch, subj)
		}
		for _, tok := range strings.Split(subj, ".") {
			if tok == "" {
				t.Fatalf("ChannelSubject(%q) = %q has an empty token", ch, subj)
			}
		}
		if !strings.HasPrefix(subj, "wsr.ch.") || strings.TrimPrefix(subj, "wsr.ch.") != ch {
			t.Fatalf("ChannelSubject(%q) = %q, want wsr.ch.<channel>", ch, subj)
		}
	}
	// The extremes too.
	for _, ch := range []string{"a", strings.Repeat("z", MaxChannelLen), "a.b", "+", "=", "/", "@:"} {
		if subj := ChannelSubject(ch); strings.Contains(subj, "..") || strings.HasSuffix(subj, ".") {
			t.Fatalf("ChannelSubject(%q) = %q has an empty token", ch, subj)
		}
	}
}

// TestIdentitySubject checks that any identity becomes exactly one literal token after
// "wsr.id.", and that distinct identities get distinct subjects.
func TestIdentitySubject(t *testing.T) {
	ids := []string{
		"bob", "a.b", "a.b.c", "*", ">", "a.*", "a.>", "a b", " ", "\t", "\n", "é", "😀",
		"bob@example.com", "user/1", "a..b", ".", "..", "x\x00y", "\xff", strings.Repeat("z", 128),
		"Bob", "BOB", "b0b", "bob ", " bob", "bo-b", "bo_b", "bo+b", "bo/b", "bo=b",
	}
	rng := rand.New(rand.NewPCG(3, 5))
	for range 3000 {
		b := make([]byte, 1+rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		ids = append(ids, string(b))
	}
	seen := make(map[string]string, len(ids))
	for _, id := range ids {
		subj := IdentitySubject(id)
		tok, ok := strings.CutPrefix(subj, "wsr.id.")
		if !ok {
			t.Fatalf("IdentitySubject(%q) = %q, want prefix wsr.id.", id, subj)
		}
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n\x00") {
			t.Fatalf("IdentitySubject(%q) = %q: token %q is not a single literal token", id, subj, tok)
		}
		for _, r := range tok {
			if r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Fatalf("IdentitySubject(%q) = %q: token has %q", id, subj, r)
			}
		}
		if prev, dup := seen[subj]; dup && prev != id {
			t.Fatalf("IdentitySubject(%q) = IdentitySubject(%q) = %q", id, prev, subj)
		}
		seen[subj] = id
	}
	// Identities never collide with the broker's fixed subjects.
	for subj := range seen {
		if subj == SubjectAll || subj == SubjectDirect || strings.HasPrefix(subj, "wsr.ch.") {
			t.Fatalf("identity subject %q collides with a fixed subject", subj)
		}
	}
}
