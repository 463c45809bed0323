package backup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Backup payloads.
//
// A payload is what a backup file holds inside its age encryption. This
// package writes and reads its frame; the store writes and reads what is
// in the frames:
//
//	"tokenvault-backup-payload/v1\n" | since (8, big endian)
//	frames: length (8, little endian) | entries
//	trailer: 0xffffffffffffffff | since (8) | next (8)
//
// The frames come from a [Source]: a consistent snapshot (one read
// timestamp) of every entry version after since, deletions included, so
// incremental payloads replay on top of earlier ones. Their encoding is
// the same for every store (the badger store's: badger's backup stream, a
// protobuf KVList of the vault's key layout per frame; see
// vault/badgerstore/backup.go), so that a backup of one kind of store
// restores into another. The trailer proves the payload is complete (a
// truncated file has none) and carries next, the since of the following
// incremental backup.

const (
	payloadMagic  = "tokenvault-backup-payload/v1\n"
	trailerMarker = ^uint64(0)
	// maxFrame bounds one frame: badger flushes its stream in batches far
	// below this, and a corrupt length must not allocate gigabytes.
	maxFrame = 256 << 20
)

// ErrBadPayload: the backup payload is truncated or malformed.
var ErrBadPayload = errors.New("backup payload is truncated or corrupt")

// PayloadInfo describes a payload.
type PayloadInfo struct {
	Since, Next uint64
}

// Source is a store that can be backed up. The badger store is one;
// another store becomes one by implementing these two methods (the
// shared suite in [backuptest] checks it).
//
// [backuptest]: https://pkg.go.dev/github.com/tokenvault/tokenvault/internal/backup/backuptest
type Source interface {
	// Snapshot writes the frames of every entry version after since (0:
	// everything), deletions included, from one consistent snapshot of a
	// live store, each as length (8 bytes, little endian) and entries; it
	// returns next, the since of the following incremental backup.
	Snapshot(w io.Writer, since uint64) (next uint64, err error)
	// BackupSizeEstimate bounds the payload's size, for progress reports.
	BackupSizeEstimate() int64
}

// WritePayload writes the payload of src's entries after since to w and
// returns next.
func WritePayload(w io.Writer, src Source, since uint64) (uint64, error) {
	head := append([]byte(payloadMagic), binary.BigEndian.AppendUint64(nil, since)...)
	if _, err := w.Write(head); err != nil {
		return 0, err
	}
	next, err := src.Snapshot(w, since)
	if err != nil {
		return 0, err
	}
	t := binary.LittleEndian.AppendUint64(nil, trailerMarker)
	t = binary.BigEndian.AppendUint64(t, since)
	t = binary.BigEndian.AppendUint64(t, next)
	_, err = w.Write(t)
	return next, err
}

// Frames hands fn every frame of one payload, in order, and returns the
// first error, fn's or the payload's. fn must not keep the frame after it
// returns (the buffer is reused). A [Loader] gets one per payload; it is
// a plain func type so that a store implements Loader without importing
// this package.
type Frames = func(fn func(frame []byte) error) error

// ReadPayload parses a payload strictly, calling fn for every frame (see
// [Frames]). fn's errors are returned as they are.
func ReadPayload(r io.Reader, fn func(frame []byte) error) (PayloadInfo, error) {
	var info PayloadInfo
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(payloadMagic)+8)
	if _, err := io.ReadFull(br, head); err != nil {
		return info, payloadErr(err, "not a tokenvault backup payload")
	}
	if string(head[:len(payloadMagic)]) != payloadMagic {
		return info, fmt.Errorf("%w: not a tokenvault backup payload", ErrBadPayload)
	}
	info.Since = binary.BigEndian.Uint64(head[len(payloadMagic):])
	var buf []byte
	for {
		var n [8]byte
		if _, err := io.ReadFull(br, n[:]); err != nil {
			return info, payloadErr(err, "missing end marker")
		}
		size := binary.LittleEndian.Uint64(n[:])
		if size == trailerMarker {
			var t [16]byte
			if _, err := io.ReadFull(br, t[:]); err != nil {
				return info, payloadErr(err, "short end marker")
			}
			if binary.BigEndian.Uint64(t[:8]) != info.Since {
				return info, fmt.Errorf("%w: end marker does not match the header", ErrBadPayload)
			}
			info.Next = binary.BigEndian.Uint64(t[8:])
			if _, err := br.ReadByte(); err != io.EOF {
				return info, payloadErr(err, "data after the end marker")
			}
			return info, nil
		}
		if size > maxFrame {
			return info, fmt.Errorf("%w: frame of %d bytes", ErrBadPayload, size)
		}
		if uint64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		if _, err := io.ReadFull(br, buf[:size]); err != nil {
			return info, payloadErr(err, "short frame")
		}
		if err := fn(buf[:size]); err != nil {
			return info, err
		}
	}
}

// payloadErr keeps errors of the underlying reader (the age decryption
// reports tampering and truncation itself) and names the rest.
func payloadErr(err error, what string) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s", ErrBadPayload, what)
	}
	return err
}
