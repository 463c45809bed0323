package badgerstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"

	"github.com/tokenvault/tokenvault/vault"
)

// Backup payloads.
//
// A payload is what a backup file holds inside its age encryption
// (internal/backup adds the file header and the encryption):
//
//	"tokenvault-backup-payload/v1\n" | since (8, big endian)
//	frames: length (8, little endian) | badger KVList (protobuf)   -- badger's own backup format
//	trailer: 0xffffffffffffffff | since (8) | next (8)
//
// The frames are badger's DB.Backup stream: a consistent snapshot (one
// read timestamp) of every key version at or after since, deletions
// included, so incremental payloads replay on top of earlier ones. The
// trailer proves the payload is complete (a truncated file has none) and
// carries next, the since of the following incremental backup.
//
// Restoring is not badger's DB.Load: LoadPayload drops, frame by frame,
// every entry that belongs to a key id the caller names (subjects erased
// after the backup was taken), so their wrapped keys and sealed records
// never reach the restored directory's files at all.

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

// WriteBackup writes a payload of everything changed after version since
// (0: everything) to w and returns the since of the next incremental
// backup. It runs on a live store: badger streams from one snapshot.
func (s *store) WriteBackup(w io.Writer, since uint64) (uint64, error) {
	head := append([]byte(payloadMagic), binary.BigEndian.AppendUint64(nil, since)...)
	if _, err := w.Write(head); err != nil {
		return 0, err
	}
	last, err := s.db.Backup(w, since)
	if err != nil {
		return 0, fmt.Errorf("badgerstore: backup: %w", err)
	}
	// Badger's iterator keeps versions strictly above SinceTs (its doc
	// comment on Backup says to add 1, which would skip a version): the
	// next backup starts after the last version this one holds.
	next := max(last, since)
	t := binary.LittleEndian.AppendUint64(nil, trailerMarker)
	t = binary.BigEndian.AppendUint64(t, since)
	t = binary.BigEndian.AppendUint64(t, next)
	_, err = w.Write(t)
	return next, err
}

// BackupSizeEstimate is the size of the store's files, a bound for
// progress reports.
func (s *store) BackupSizeEstimate() int64 {
	lsm, vlog := s.db.EstimateSize(nil)
	return int64(lsm + vlog)
}

// readPayload parses a payload, calling fn for every entry.
func readPayload(r io.Reader, fn func(*pb.KV) error) (PayloadInfo, error) {
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
		var list pb.KVList
		if err := proto.Unmarshal(buf[:size], &list); err != nil {
			return info, fmt.Errorf("%w: frame does not parse", ErrBadPayload)
		}
		for _, kv := range list.Kv {
			if err := fn(kv); err != nil {
				return info, err
			}
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

// bitDelete is badger's deletion marker in pb.KV.Meta (badger's value.go);
// badger's backup format carries it, and deletions keep no value.
const bitDelete = 1 << 0

func deleted(kv *pb.KV) bool { return len(kv.Meta) > 0 && kv.Meta[0]&bitDelete != 0 }

// ScanPayload reads a payload and calls onKey for every subject key and
// onLedger for every erasure-ledger entry it stores (deletions are
// skipped). The restore uses it to find erased subjects before anything
// is written.
func ScanPayload(r io.Reader, onKey func(subject string, sk vault.SubjectKey), onLedger func(vault.LedgerEntry)) (PayloadInfo, error) {
	return readPayload(r, func(kv *pb.KV) error {
		if len(kv.Key) < 2 || kv.Key[1] != '/' || deleted(kv) {
			return nil
		}
		switch kv.Key[0] {
		case pKey:
			sk, err := decodeSubjectKey(kv.Value)
			if err != nil {
				return fmt.Errorf("%w: subject key entry", ErrBadPayload)
			}
			onKey(string(kv.Key[2:]), sk)
		case pLedger:
			at, err := decodeTime(kv.Value, "ledger entry")
			if err != nil || len(kv.Key) != 2+ledgerHashSize {
				return fmt.Errorf("%w: ledger entry", ErrBadPayload)
			}
			onLedger(vault.LedgerEntry{Hash: kv.Key[2:], ErasedAt: at})
		}
		return nil
	})
}

// keyIDOf returns the subject key id an entry belongs to (ok false for
// entries of no key: ledger entries, deletions of records).
func keyIDOf(kv *pb.KV) (id vault.KeyID, ok bool, err error) {
	k := kv.Key
	if len(k) < 2 || k[1] != '/' {
		return id, false, fmt.Errorf("%w: unknown key", ErrBadPayload)
	}
	rest := k[2:]
	switch k[0] {
	case pKeyID, pIndex, pLookup, pPending, pRestrict:
		if len(rest) < len(id) {
			return id, false, fmt.Errorf("%w: short key", ErrBadPayload)
		}
		copy(id[:], rest)
		return id, true, nil
	case pKey, pToken, pExpiry:
		if deleted(kv) {
			return id, false, nil
		}
		switch k[0] {
		case pKey:
			sk, err := decodeSubjectKey(kv.Value)
			return sk.ID, err == nil, err
		case pToken:
			r, err := decodeRecord(kv.Value)
			return r.KeyID, err == nil, err
		default:
			if len(kv.Value) != len(id) {
				return id, false, fmt.Errorf("%w: expiry entry", ErrBadPayload)
			}
			copy(id[:], kv.Value)
			return id, true, nil
		}
	case pLedger:
		return id, false, nil
	}
	return id, false, fmt.Errorf("%w: unknown key type", ErrBadPayload)
}

// LoadCounts says what a load wrote and dropped.
type LoadCounts struct {
	Loaded, Dropped int64
}

// Loader restores payloads into a new store directory.
type Loader struct {
	db *badger.DB
}

// NewLoader opens a store directory for loading; the caller makes sure it
// is new (restore refuses non-empty directories).
func NewLoader(dir string, logger *slog.Logger) (*Loader, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := badger.Open(badgerOptions(dir, logger))
	if err != nil {
		return nil, fmt.Errorf("badgerstore: opening %s: %w", dir, err)
	}
	return &Loader{db: db}, nil
}

// Load applies one payload, leaving out every entry that belongs to a key
// id for which drop returns true. Payloads must be loaded in order (a
// full backup, then its incrementals).
func (l *Loader) Load(r io.Reader, drop func(vault.KeyID) bool) (PayloadInfo, LoadCounts, error) {
	var c LoadCounts
	var info PayloadInfo
	pr, pw := io.Pipe()
	parsed := make(chan error, 1)
	go func() {
		var err error
		info, err = readPayload(r, func(kv *pb.KV) error {
			id, ok, err := keyIDOf(kv)
			if err != nil {
				return err
			}
			if ok && drop(id) {
				c.Dropped++
				return nil
			}
			c.Loaded++
			// One frame per entry keeps the filter simple; badger's
			// loader batches the writes itself.
			b, err := proto.Marshal(&pb.KVList{Kv: []*pb.KV{kv}})
			if err != nil {
				return err
			}
			if _, err := pw.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(b)))); err != nil {
				return err
			}
			_, err = pw.Write(b)
			return err
		})
		pw.CloseWithError(err) // nil: EOF for the loader
		parsed <- err
	}()
	err := l.db.Load(pr, 256)
	pr.CloseWithError(errors.New("load stopped")) // unblocks the parser if Load failed first
	perr := <-parsed
	if perr != nil {
		return info, c, perr
	}
	if err != nil {
		return info, c, fmt.Errorf("badgerstore: loading backup: %w", err)
	}
	return info, c, nil
}

// Close syncs and closes the directory.
func (l *Loader) Close() error {
	if err := l.db.Sync(); err != nil {
		l.db.Close()
		return err
	}
	return l.db.Close()
}
