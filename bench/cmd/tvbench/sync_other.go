//go:build !linux

package main

import "context"

// Per-thread CPU time (RUSAGE_THREAD) is Linux's; elsewhere the command
// says so.
var syncMethods = []syncMethod{{"sync", func(context.Context, string, int, int) (syncCost, error) {
	return syncCost{}, errSyncUnsupported
}}}
