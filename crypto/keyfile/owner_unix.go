//go:build unix

package keyfile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner wants a secret file owned by this process's user or by root,
// as ssh does: a 0600 file owned by another user is one that user can
// replace.
func checkOwner(path string, st fs.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(sys.Uid) != uid && sys.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by user %d, not by this process's user %d or root (chown %d %s)", ErrPermissions, path, sys.Uid, uid, uid, path)
	}
	return nil
}
