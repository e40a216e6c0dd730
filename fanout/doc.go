// Package fanout moves messages between wsreactor nodes. A Broker publishes channel
// messages, direct messages to a client identity, and broadcasts to every socket; it
// delivers each message this node must deliver to a Deliverer, which the server wires to
// its event loops. Two Brokers exist: Local (in process, for a single node: nothing else
// to run) and NATS (github.com/nats-io/nats.go, for a fleet).
//
// # Subjects
//
// Channel c travels on "wsr.ch.<c>": channel names (1-128 of A-Z a-z 0-9 _ - : @ / = + .,
// no leading, trailing or doubled '.') never contain a NATS wildcard, whitespace or an
// empty token, so each channel maps to exactly one literal subject and no subscription
// can match another channel's. Broadcasts travel on "wsr.all". Direct messages use
// "wsr.direct" under broadcast routing (every node hears every one and filters by its
// local registry) and "wsr.id.<base64url(identity)>" under directed routing (a node
// subscribes to the subject of each identity it holds, so NATS interest delivers a direct
// message only to the nodes that own the identity); base64url keeps any identity a single
// literal token.
//
// # Interest
//
// A node subscribes to a channel's subject when its first local subscriber joins and
// unsubscribes when the last leaves (Subscribe/Unsubscribe, called by the server when its
// node-wide interest changes), and likewise for identities under directed routing
// (Claim/Release). Sync waits until those changes have reached the broker, so a client
// told "subscribed" receives every message published after.
//
// # Failure
//
// A publish that cannot reach the broker returns an error and the caller counts the
// message as failed; local delivery happens first and never depends on the broker. The NATS
// broker does not buffer publishes while disconnected, so nothing is silently dropped on
// a later reconnect; it reconnects forever and restores its subscriptions.
//
// Every Broker method is safe for concurrent use; none blocks on the network except Sync
// and Close.
package fanout
