package badgerstore

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mappedLimitSupported: MADV_PAGEOUT needs Linux 5.4; an older kernel
// answers EINVAL, which madvise reports (and the limiter stops).
const mappedLimitSupported = true

const (
	advisePageOut  = unix.MADV_PAGEOUT
	adviseDontNeed = unix.MADV_DONTNEED
)

// madvise advises the kernel on [start, start+size) of this process's
// address space. gone is true if nothing is mapped there any more (ENOMEM:
// badger unmapped the file since /proc/self/maps was read).
func madvise(start, size uint64, advice int) (gone bool, err error) {
	// A raw address from /proc/self/maps, not a Go slice: see mapped.go for
	// why each advice is safe on it.
	_, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(size), uintptr(advice))
	switch e {
	case 0:
		return false, nil
	case unix.ENOMEM:
		return true, nil
	default:
		return false, fmt.Errorf("badgerstore: madvise(%d): %w", advice, e)
	}
}

// residentFile is this process's RssFile in bytes.
func residentFile() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return rssFile(f)
}
