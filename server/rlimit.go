package server

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// raiseFileLimit raises the open-file soft limit to the hard limit, since every socket is
// a descriptor and the default soft limit (often 1024) would cap the node far below its
// capacity. It returns the effective soft limit.
func raiseFileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("server: getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("server: setrlimit: %w", err)
		}
	}
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("server: getrlimit: %w", err)
	}
	return lim.Cur, nil
}

// reservedFiles is what the process needs besides sockets: listeners, epoll and eventfd per
// loop, stdio, the admin listener and its scrapes.
const reservedFiles = 64
