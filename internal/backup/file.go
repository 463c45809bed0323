// Package backup is tokenvault's backup file format, erasure-ledger file
// format and offline restore.
//
// # Backup files
//
// A backup file is a short plaintext header followed by an age-encrypted
// payload (see [badgerstore.WriteBackup] for the payload):
//
//	tokenvault-backup/v1
//	since 00000000000000000000
//	next  00000000000000001234
//	<blank line>
//	<age ciphertext>
//
// The header says, without decrypting, where the backup sits in a chain:
// a full backup has since 0; an incremental one starts where the previous
// one's next ended. It is not trusted: the payload repeats since and next
// inside the encryption, and a restore refuses a file whose header and
// payload disagree. The server encrypts to the recipients the caller
// names, so the server never needs a private key and only ciphertext
// leaves it.
//
// [badgerstore.WriteBackup]: https://pkg.go.dev/github.com/tokenvault/tokenvault/vault/badgerstore
package backup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"filippo.io/age"
)

const (
	fileMagic = "tokenvault-backup/v1\n"
	// The header has a fixed size so the client can fill in next, known
	// only at the end of the stream, in place.
	sinceLine  = "since %020d\n"
	nextLine   = "next  %020d\n"
	HeaderSize = len(fileMagic) + 27 + 27 + 1
	// NextOffset is where the next line starts.
	NextOffset = len(fileMagic) + 27
)

// ErrFormat: not a tokenvault backup file, or a damaged header.
var ErrFormat = errors.New("not a tokenvault backup file (or its header is damaged)")

// Header is the plaintext header of a backup file.
type Header struct {
	Since, Next uint64
}

// Marshal encodes the header (HeaderSize bytes).
func (h Header) Marshal() []byte {
	return []byte(fileMagic + fmt.Sprintf(sinceLine, h.Since) + fmt.Sprintf(nextLine, h.Next) + "\n")
}

// NextLine is the next line alone, to write at NextOffset.
func NextLine(next uint64) []byte { return []byte(fmt.Sprintf(nextLine, next)) }

// ParseHeader decodes a header strictly.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) != HeaderSize || !strings.HasPrefix(string(b), fileMagic) || b[HeaderSize-1] != '\n' {
		return h, ErrFormat
	}
	var err error
	if h.Since, err = field(string(b[len(fileMagic):NextOffset]), "since "); err != nil {
		return h, err
	}
	if h.Next, err = field(string(b[NextOffset:HeaderSize-1]), "next  "); err != nil {
		return h, err
	}
	return h, nil
}

func field(line, name string) (uint64, error) {
	digits, ok := strings.CutPrefix(line, name)
	if !ok || len(digits) != 21 || digits[20] != '\n' {
		return 0, ErrFormat
	}
	for _, c := range digits[:20] {
		if c < '0' || c > '9' {
			return 0, ErrFormat
		}
	}
	n, err := strconv.ParseUint(digits[:20], 10, 64)
	if err != nil {
		return 0, ErrFormat
	}
	return n, nil
}

// ReadHeader reads the header at the start of r.
func ReadHeader(r io.Reader) (Header, error) {
	b := make([]byte, HeaderSize)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, ErrFormat
		}
		return Header{}, err
	}
	return ParseHeader(b)
}

// ParseRecipients parses age recipients (age1... X25519 or post-quantum
// hybrid keys), naming the bad one as recipients[i].
func ParseRecipients(in []string) ([]age.Recipient, error) {
	if len(in) == 0 {
		return nil, errors.New("recipients: at least one age recipient is required")
	}
	var out []age.Recipient
	for i, s := range in {
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil || len(rs) != 1 || strings.ContainsAny(s, "\n#") {
			return nil, fmt.Errorf("recipients[%d]: not an age public key (age1...)", i)
		}
		out = append(out, rs[0])
	}
	return out, nil
}

// ParseIdentityFile parses an age identity file (as age-keygen writes).
func ParseIdentityFile(r io.Reader) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("not an age identity file: %w", err)
	}
	return ids, nil
}

// Encrypt returns a writer that age-encrypts to recipients into w; Close
// it to finish the encryption.
func Encrypt(w io.Writer, recipients []age.Recipient) (io.WriteCloser, error) {
	return age.Encrypt(w, recipients...)
}
