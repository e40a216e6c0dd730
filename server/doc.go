// Package server is wsreactor's composition root: it turns Options into a running node.
// It owns the gnet engine (through package loop), the admin HTTP listener (/metrics,
// /healthz, /readyz, /v1/*, /debug/pprof/), admission at the upgrade (origin and capacity),
// the applications (echo; pub/sub) and the drain. It is the only package that imports the
// metrics library, and nothing but cmd imports it.
//
// A Server's exported methods are safe for concurrent use. Work that touches connections
// is posted to the event loops; the admin handlers never touch a connection directly.
package server
