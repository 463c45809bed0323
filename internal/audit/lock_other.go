//go:build !unix

package audit

import "os"

// lockFile is a no-op where flock(2) does not exist: there, keeping two
// servers off one audit log is the deployment's job (README).
func lockFile(string) (*os.File, error) { return nil, nil }
