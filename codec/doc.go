// Package codec implements RFC 6455 (WebSocket) on byte slices: the opening handshake
// (parse and validate the client's HTTP upgrade request, write the 101 or an HTTP error),
// the frame decoder for client frames, the encoders for server (unmasked) and client
// (masked) frames, close codes and UTF-8 validation.
//
// The package does no I/O, starts no goroutines and knows nothing of gnet: the caller owns
// the bytes. Values returned from decoding alias the caller's buffer and are valid only
// until the caller reuses or discards it; every such function says so. A Decoder holds the
// per-connection state of a fragmented message and is not safe for concurrent use: each
// connection owns one, and only that connection's event loop touches it.
//
// Errors are either ErrIncomplete ("need more bytes": call again with more input) or a
// *ProtocolError carrying the close code to send (RFC 6455 §7.4.1), or a *HandshakeError
// carrying the HTTP status to answer before the upgrade.
package codec
