//go:build !unix

package vault

import "errors"

func mlock([]byte) error { return errors.New("mlock is not available on this platform") }
