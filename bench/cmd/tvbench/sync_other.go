//go:build !linux

package main

import (
	"context"
	"errors"
)

var errSyncUnsupported = errors.New("not supported on this system")

// Per-thread CPU time (RUSAGE_THREAD) is Linux's; elsewhere the command
// says so.
var syncMethods = []syncMethod{{"sync", func(context.Context, string, int, int) (syncCost, error) {
	return syncCost{}, errSyncUnsupported
}}}
