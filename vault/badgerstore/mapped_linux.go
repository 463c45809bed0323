package badgerstore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

const mappedLimitSupported = true

// dontNeed is madvise(MADV_DONTNEED) on [start, start+size) of this
// process's address space: a raw address from /proc/self/maps, not a Go
// slice, and a mapping the caller holds (see mapped.go).
func dontNeed(start, size uint64) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(size), unix.MADV_DONTNEED); e != 0 {
		return fmt.Errorf("badgerstore: madvise: %w", e)
	}
	return nil
}
