//go:build unix

package badgerstore

import (
	"fmt"
	"os"
	"syscall"
)

// freeBytes is what an unprivileged writer may still allocate on dir's
// filesystem (Bavail: root's reserved blocks are not counted, so the
// store leaves them to the rest of the system).
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("badgerstore: measuring free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// allocated is the disk space a (sparse) file occupies.
func allocated(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
