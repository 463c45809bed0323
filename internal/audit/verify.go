package audit

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
)

// Report summarizes a verified log.
type Report struct {
	Entries     uint64 // lines, checkpoints included
	Checkpoints int
	// LastCheckpoint is the seq of the last checkpoint (0: none).
	LastCheckpoint uint64
	// Unsigned counts the entries after the last checkpoint: they are
	// chained but not yet covered by a signature.
	Unsigned uint64
	// SignaturesChecked is false when no public key was given: then only
	// the chain was checked, which someone able to rewrite the whole file
	// can forge.
	SignaturesChecked bool
	LastHash          string
	// Continues: the log starts with a continue entry naming this earlier
	// (rotated) file, which was not verified.
	Continues string
	// Repeated: lines skipped because they repeat, byte for byte, lines
	// already verified (a shipped copy after a crash; Verify only).
	Repeated uint64
}

// ErrTampered is wrapped by Verify errors about the content (as opposed
// to I/O errors).
var ErrTampered = errors.New("audit log verification failed")

// Verify reads a whole log and checks every line's hash, the chain (seq
// and prev), and, when pub is not nil, every checkpoint's signature.
//
// Detected: any edited, removed, inserted or reordered line, anywhere;
// with pub, also a rewritten chain up to the last checkpoint. Not
// detectable from the file alone: removal of the lines after the last
// checkpoint (truncation back to a checkpoint) or of the whole file.
// Report.Unsigned says how many entries only the chain protects; the
// server also logs each checkpoint's seq and hash, so an off-host copy of
// the server log bounds truncation further.
//
// The stream may also be a shipped copy (ship.go) that runs across
// rotated files: a continue entry is accepted after the closing
// checkpoint it names, and lines that repeat recently verified ones
// exactly (a copy shipped again after a crash) are skipped and counted.
func Verify(r io.Reader, pub ed25519.PublicKey) (Report, error) {
	c := newChain(pub)
	c.stream, c.recent = true, make([]recentLine, recentLines)
	return c.file(r, "", false)
}

// recentLines is how many verified lines a stream remembers to recognize
// repeats.
const recentLines = 1 << 16

// chain verifies one chain over one or more files, in order.
type chain struct {
	pub   ed25519.PublicKey
	keyID string
	files int    // files verified so far
	last  string // the previous file's name (plain)
	rep   Report // the chain so far
	// continues: the file the first file continues (not verified here);
	// deleted: files retention notices say were deleted.
	continues string
	deleted   map[string]bool
	// stream: one stream, possibly across files and with repeats (Verify).
	stream bool
	recent []recentLine // stream only: the last recentLines lines, by seq
}

type recentLine struct {
	seq  uint64
	hash string
}

func newChain(pub ed25519.PublicKey) *chain {
	c := &chain{pub: pub, rep: Report{SignaturesChecked: pub != nil, LastHash: ZeroHash}, deleted: map[string]bool{}}
	if pub != nil {
		c.keyID = KeyID(pub)
	}
	return c
}

// file verifies the next file of the chain, named name (plain, "" for a
// single file). closed: the file was rotated, so it must end with its
// closing checkpoint. It returns the file's own counts (Report.Entries:
// its lines) with the chain's LastHash and LastCheckpoint.
func (c *chain) file(r io.Reader, name string, closed bool) (Report, error) {
	rep := Report{SignaturesChecked: c.pub != nil, LastHash: c.rep.LastHash, LastCheckpoint: c.rep.LastCheckpoint}
	first := c.files == 0
	c.files++
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		fail := func(format string, args ...any) (Report, error) {
			return rep, fmt.Errorf("%w: line %d: %s", ErrTampered, line, fmt.Sprintf(format, args...))
		}
		b, err := readLine(br)
		if err == io.EOF {
			if line == 1 && !first {
				return fail("the file is empty (it should continue %s)", c.last)
			}
			if closed && rep.Unsigned > 0 {
				return fail("a rotated file must end with its closing checkpoint: the file was truncated")
			}
			c.last = name
			return rep, nil
		}
		if errors.Is(err, errTorn) {
			return fail("no newline at the end (torn write or truncated file)")
		}
		if err != nil {
			return rep, err
		}
		e, err := ParseLine(b)
		if err != nil {
			return fail("%v", err)
		}
		if c.stream && e.Seq <= c.rep.Entries && e.Seq > 0 {
			if r := c.recent[e.Seq%recentLines]; r.seq == e.Seq && r.hash == e.Hash {
				rep.Repeated++
				continue
			}
		}
		if e.Type == TypeContinue {
			switch {
			case line != 1 && c.stream:
				if e.CheckpointSeq != c.rep.Entries || c.rep.LastCheckpoint != c.rep.Entries {
					return fail("a continue entry that does not follow the checkpoint it names (%d)", e.CheckpointSeq)
				}
			case line != 1:
				return fail("a continue entry that does not start a file")
			case first && c.rep.Entries == 0:
				// The start of what is left of the chain: its predecessor
				// is not here (deleted by retention, or verified alone).
				c.continues, rep.Continues = e.File, e.File
				c.rep.Entries, c.rep.LastHash, c.rep.LastCheckpoint = e.Seq-1, e.Prev, e.CheckpointSeq
				rep.LastHash, rep.LastCheckpoint = e.Prev, e.CheckpointSeq
			case e.File != c.last:
				return fail("the file continues %s, but the file before it is %s: a file is missing, renamed or out of order", Clip(e.File), c.last)
			case e.CheckpointSeq != c.rep.LastCheckpoint || e.CheckpointSeq != c.rep.Entries:
				return fail("the file continues %s after its checkpoint %d, but that file ends at entry %d (truncated?)", Clip(e.File), e.CheckpointSeq, c.rep.Entries)
			}
		} else if line == 1 && !first {
			return fail("the file does not start by naming the file it continues (%s)", c.last)
		}
		if e.Seq != c.rep.Entries+1 {
			return fail("sequence number %d, expected %d (a line was removed, inserted or reordered)", e.Seq, c.rep.Entries+1)
		}
		if e.Prev != c.rep.LastHash {
			return fail("does not chain to the line before (a line was edited, removed or reordered)")
		}
		if e.Type == TypeCheckpoint {
			if c.pub != nil {
				if err := verifyCheckpoint(&e, c.pub, c.keyID); err != nil {
					return fail("%v", err)
				}
			}
			rep.Checkpoints++
			rep.LastCheckpoint = e.Seq
			rep.Unsigned = 0
		} else {
			if err := checkUnsigned(&e); err != nil {
				return fail("%v", err)
			}
			rep.Unsigned++
			if e.Type == TypeNotice && e.Op == OpRetention && e.File != "" {
				c.deleted[e.File] = true
			}
		}
		rep.Entries++
		rep.LastHash = e.Hash
		if c.stream {
			c.recent[e.Seq%recentLines].seq, c.recent[e.Seq%recentLines].hash = e.Seq, e.Hash
		}
		c.rep.Entries, c.rep.LastHash, c.rep.LastCheckpoint = e.Seq, e.Hash, rep.LastCheckpoint
		c.rep.Checkpoints, c.rep.Unsigned = c.rep.Checkpoints+btoi(e.Type == TypeCheckpoint), rep.Unsigned
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

var errTorn = errors.New("torn line")

func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > MaxLine {
			return nil, fmt.Errorf("%w: a line is longer than %d bytes", ErrTampered, MaxLine)
		}
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(buf) > 0:
			return nil, errTorn
		default:
			return nil, err
		}
	}
}
