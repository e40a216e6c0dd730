// Package servertest runs a wsreactor server inside a test's process, on loopback ports the
// kernel picks, and reads its /metrics: the harness that the tests of server, bench and the
// commands share, so that each asserts against the same start, shutdown and scrape.
//
// Only tests import it (it imports testing), the way net/http/httptest serves net/http.
// Every function may be called from any goroutine of the test; a testing.TB passed in is
// used for Fatalf, so call those that take one from the test's own goroutine.
package servertest
