package main

import (
	"context"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

var syncMethods = []syncMethod{
	{"append + fsync", appendFsync},
	{"mmap write + msync", mmapMsync},
}

// threadCPU is the calling thread's CPU time: the measuring goroutine is
// locked to its thread, so the runtime's other threads (GC, timers) do not
// count.
func threadCPU() (user, sys time.Duration, err error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, 0, err
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), nil
}

// measure runs one(i) n times on a locked thread.
func measure(ctx context.Context, n int, one func(i int) error) (syncCost, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	u0, s0, err := threadCPU()
	if err != nil {
		return syncCost{}, err
	}
	t0 := time.Now()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return syncCost{}, err
		}
		if err := one(i); err != nil {
			return syncCost{}, err
		}
	}
	wall := time.Since(t0)
	u1, s1, err := threadCPU()
	if err != nil {
		return syncCost{}, err
	}
	return syncCost{user: u1 - u0, sys: s1 - s0, wall: wall}, nil
}

// appendFsync appends size bytes and fsyncs, as the audit log commits a
// group.
func appendFsync(ctx context.Context, path string, n, size int) (syncCost, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return syncCost{}, err
	}
	defer f.Close()
	buf := make([]byte, size)
	return measure(ctx, n, func(int) error {
		if _, err := f.Write(buf); err != nil {
			return err
		}
		return f.Sync()
	})
}

// walMapping is the size of the mapping msynced: badger maps each
// memtable's write-ahead log file at twice the memtable size (tokenvault
// keeps badger's 64 MiB), and syncs the whole mapping each time.
const walMapping = 128 << 20

// mmapMsync writes size bytes into a shared mapping of a preallocated
// file and msyncs the whole mapping, as badger syncs its memtable's
// write-ahead log.
func mmapMsync(ctx context.Context, path string, n, size int) (syncCost, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return syncCost{}, err
	}
	defer f.Close()
	total := max(n*size, walMapping)
	if err := f.Truncate(int64(total)); err != nil {
		return syncCost{}, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, total, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return syncCost{}, err
	}
	defer unix.Munmap(m)
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	return measure(ctx, n, func(i int) error {
		copy(m[i*size:], buf)
		return unix.Msync(m, unix.MS_SYNC)
	})
}
