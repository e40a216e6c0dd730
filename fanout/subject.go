package fanout

import "encoding/base64"

// Subjects (see the package doc for why each is safe).
const (
	SubjectAll            = "wsr.all"
	SubjectDirect         = "wsr.direct"
	subjectChannelPrefix  = "wsr.ch."
	subjectIdentityPrefix = "wsr.id."
)

// MaxChannelLen is the longest channel name (DESIGN.md).
const MaxChannelLen = 128

// ValidChannel reports whether name is a channel name DESIGN.md allows: 1-128 characters
// of A-Z a-z 0-9 _ - : @ / = + . with no leading, trailing or doubled '.'. These rules
// are what make ChannelSubject safe: no wildcard, no whitespace, no empty token.
func ValidChannel(name string) bool {
	if len(name) == 0 || len(name) > MaxChannelLen || name[0] == '.' || name[len(name)-1] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == ':', c == '@', c == '/', c == '=', c == '+':
		case c == '.':
			if name[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// ChannelSubject returns the NATS subject of a valid channel.
func ChannelSubject(channel string) string { return subjectChannelPrefix + channel }

// IdentitySubject returns the NATS subject of an identity under directed routing.
func IdentitySubject(identity string) string {
	return subjectIdentityPrefix + base64.RawURLEncoding.EncodeToString([]byte(identity))
}
