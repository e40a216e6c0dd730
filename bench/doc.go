// Package bench is wsreactor's client swarm: a load generator built on the same pieces as
// the server — gnet's client-side event loops, codec's masked client frames and a timing
// wheel per loop — so it holds hundreds of thousands of sockets with no goroutine per
// socket and about a kilobyte each.
//
// A run has a coordinator and one or more workers. The coordinator (Run) splits the
// sockets and source addresses across workers, waits until every worker has opened its
// share, drives the scenario (publishing through the admin API, triggering a drain),
// tells the workers to stop, and merges their reports into one Report. A worker (Worker)
// is either in process or a child process of the same binary (RunChild) speaking JSON
// lines on stdin/stdout; a run spreads over several processes to get past the
// per-process open-file limit.
//
// # Threading
//
// Each socket's state (type conn) lives on its gnet event loop and is touched only there,
// as in the server. Per-loop state (the wheel, the socket list) is a loopState reached
// through the connection. Counters shared across loops are atomics; histograms are
// guarded by a mutex per worker (recorded once per message or connect, not per byte).
// Dials run on a bounded pool of goroutines because connect(2) through net.Dialer blocks;
// each dialled socket is then enrolled into gnet.
package bench
