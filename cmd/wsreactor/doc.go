// Command wsreactor runs one wsreactor node: it maps flags and WSR_* environment variables
// to server.Options, runs the server, and turns SIGTERM or SIGINT into a graceful drain.
package main
