//go:build unix

package vault

import "golang.org/x/sys/unix"

// mlock keeps b's pages out of swap; see memKey. It fails where the
// process's RLIMIT_MEMLOCK is too small (the caller logs that once).
func mlock(b []byte) error { return unix.Mlock(b) }
