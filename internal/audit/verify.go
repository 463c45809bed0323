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
func Verify(r io.Reader, pub ed25519.PublicKey) (Report, error) {
	rep := Report{SignaturesChecked: pub != nil, LastHash: ZeroHash}
	var keyID string
	if pub != nil {
		keyID = KeyID(pub)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(br)
		if err == io.EOF {
			return rep, nil
		}
		fail := func(format string, args ...any) (Report, error) {
			return rep, fmt.Errorf("%w: line %d: %s", ErrTampered, line, fmt.Sprintf(format, args...))
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
		if e.Seq != rep.Entries+1 {
			return fail("sequence number %d, expected %d (a line was removed, inserted or reordered)", e.Seq, rep.Entries+1)
		}
		if e.Prev != rep.LastHash {
			return fail("does not chain to the line before (a line was edited, removed or reordered)")
		}
		if e.Type == TypeCheckpoint {
			if pub != nil {
				if err := verifyCheckpoint(&e, pub, keyID); err != nil {
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
		}
		rep.Entries, rep.LastHash = e.Seq, e.Hash
	}
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
