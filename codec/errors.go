package codec

import (
	"errors"
	"strconv"
)

// ErrIncomplete reports that the input ends before a complete request head or frame: the
// caller keeps the bytes and calls again when more have arrived. It is never a failure.
var ErrIncomplete = errors.New("codec: incomplete")

// ProtocolError is a violation of RFC 6455 by the peer. Code is the close code the server
// sends before it closes the connection (1002, 1007 or 1009). The package's ProtocolErrors
// are immutable package-level values, so returning one never allocates; compare with
// errors.Is or inspect Code with errors.As.
type ProtocolError struct {
	Code CloseCode
	Msg  string
}

// Error implements error.
func (e *ProtocolError) Error() string {
	return "codec: protocol error " + strconv.Itoa(int(e.Code)) + ": " + e.Msg
}

// Protocol violations detected by the Decoder (RFC 6455 §5 and §7.4).
var (
	ErrUnmasked               = &ProtocolError{CloseProtocolError, "client frame is not masked"}                       // §5.1
	ErrMasked                 = &ProtocolError{CloseProtocolError, "server frame is masked"}                           // §5.1
	ErrReservedBits           = &ProtocolError{CloseProtocolError, "RSV bits set without a negotiated extension"}      // §5.2
	ErrReservedOpcode         = &ProtocolError{CloseProtocolError, "reserved opcode"}                                  // §5.2
	ErrControlTooLong         = &ProtocolError{CloseProtocolError, "control frame payload over 125 bytes"}             // §5.5
	ErrControlFragmented      = &ProtocolError{CloseProtocolError, "fragmented control frame"}                         // §5.5
	ErrUnexpectedContinuation = &ProtocolError{CloseProtocolError, "continuation frame without a message to continue"} // §5.4
	ErrExpectedContinuation   = &ProtocolError{CloseProtocolError, "new data frame inside a fragmented message"}       // §5.4
	ErrLengthTopBit           = &ProtocolError{CloseProtocolError, "64-bit payload length with the top bit set"}       // §5.2
	ErrLengthNotMinimal       = &ProtocolError{CloseProtocolError, "payload length not in its shortest encoding"}      // §5.2
	ErrMessageTooBig          = &ProtocolError{CloseTooBig, "message over the size limit"}                             // §7.4.1
	ErrInvalidUTF8            = &ProtocolError{CloseInvalidPayload, "text message is not valid UTF-8"}                 // §8.1
	ErrCloseLength            = &ProtocolError{CloseProtocolError, "close frame with a 1-byte payload"}                // §5.5.1
	ErrCloseCode              = &ProtocolError{CloseProtocolError, "invalid or reserved close code"}                   // §7.4
	ErrCloseReasonUTF8        = &ProtocolError{CloseInvalidPayload, "close reason is not valid UTF-8"}                 // §5.5.1
)
