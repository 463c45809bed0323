package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// Typed calls of the KeyAdmin service (KEK rotation epochs) and the
// BackupAdmin service (backups, the erasure ledger). See the README's
// "Rotation epochs" and "Backups" sections for when to call them.

// ErrIncomplete: the server ended a stream (a rotation, a backup) before
// its last message. Nothing is lost: a rotation is resumed with
// RotateKEK(ctx, true, ...), a backup is taken again.
var ErrIncomplete = errors.New("tokenvault: the server ended the stream before it was complete")

// KEKStatus describes the key-encryption key's versions.
type KEKStatus struct {
	// Current is the version new subject keys are wrapped under.
	Current int
	// BackupRetention: a version is retired only once its successor is
	// older than this (the server's kek.backup_retention).
	BackupRetention time.Duration
	Versions        []KEKVersion
}

// KEKVersion is one KEK version still held.
type KEKVersion struct {
	Version     int
	Created     time.Time
	SubjectKeys int64 // stored subject keys wrapped under it
}

// KEKStatus lists the KEK versions and how many subject keys use each.
// It is safe to repeat, so it is retried on UNAVAILABLE (see WithRetry).
func (c *Client) KEKStatus(ctx context.Context) (KEKStatus, error) {
	var resp *pb.GetKekStatusResponse
	err := c.do(ctx, true, func(ctx context.Context) (err error) {
		resp, err = c.KeyAdmin().GetKekStatus(ctx, &pb.GetKekStatusRequest{})
		return err
	})
	if err != nil {
		return KEKStatus{}, err
	}
	st := KEKStatus{Current: int(resp.GetCurrentVersion()), BackupRetention: resp.GetBackupRetention().AsDuration()}
	for _, v := range resp.GetVersions() {
		st.Versions = append(st.Versions, KEKVersion{Version: int(v.GetVersion()), Created: v.GetCreated().AsTime(), SubjectKeys: v.GetSubjectKeys()})
	}
	return st, nil
}

// Rotation is the progress of a KEK rotation.
type Rotation struct {
	Version   int   // the current KEK version
	Scanned   int64 // subject keys looked at so far
	Total     int64 // subject keys when the rewrap began
	Rewrapped int64 // subject keys moved to Version so far
	Done      bool
}

// RotateKEK makes a new KEK version current and rewraps every stored
// subject key under it; with rewrapOnly it only rewraps the keys not yet
// under the current version (it resumes an interrupted rotation). progress,
// if not nil, sees every progress message, the last one too; RotateKEK
// returns the last. A rotation is long: give ctx a deadline to match (the
// call timeout of WithCallTimeout does not apply to it). It is not
// retried: a failed rotation is resumed with rewrapOnly.
func (c *Client) RotateKEK(ctx context.Context, rewrapOnly bool, progress func(Rotation)) (Rotation, error) {
	stream, err := c.KeyAdmin().RotateKek(ctx, &pb.RotateKekRequest{RewrapOnly: rewrapOnly})
	if err != nil {
		return Rotation{}, fromStatus(err)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return Rotation{}, ErrIncomplete
		}
		if err != nil {
			return Rotation{}, fromStatus(err)
		}
		r := Rotation{Version: int(m.GetVersion()), Scanned: m.GetScanned(), Total: m.GetTotal(),
			Rewrapped: m.GetRewrapped(), Done: m.GetDone()}
		if progress != nil {
			progress(r)
		}
		if r.Done {
			return r, nil
		}
	}
}

// Retirement is what RetireKEK destroyed.
type Retirement struct {
	Retired    []int // versions destroyed by this call (may be none)
	MinVersion int   // the oldest version still held
}

// RetireKEK destroys every KEK version whose successor has been current
// for longer than the server's backup retention: backups older than that
// become undecryptable, which is the point (erased subjects stay erased in
// them). The server refuses while a stored subject key still uses such a
// version.
func (c *Client) RetireKEK(ctx context.Context) (Retirement, error) {
	var resp *pb.RetireKekResponse
	err := c.do(ctx, false, func(ctx context.Context) (err error) {
		resp, err = c.KeyAdmin().RetireKek(ctx, &pb.RetireKekRequest{})
		return err
	})
	if err != nil {
		return Retirement{}, err
	}
	r := Retirement{MinVersion: int(resp.GetMinVersion())}
	for _, v := range resp.GetRetiredVersions() {
		r.Retired = append(r.Retired, int(v))
	}
	return r, nil
}

// BackupEnd is the last message of a backup stream: what a backup file's
// header records (internal/backup writes it; a restore verifies it).
type BackupEnd struct {
	// NextSince is the since of the next incremental backup.
	NextSince uint64
	// Signature is the vault's Ed25519 signature over the backup, made with
	// the key whose fingerprint is SigningKeyID (its receipt signing key).
	Signature    []byte
	SigningKeyID string
	// Bytes is how much of the payload was written to w.
	Bytes int64
}

// Backup streams an encrypted backup of the store into w: a full backup
// with since 0, else the changes since an earlier backup's NextSince. The
// payload is age ciphertext to recipients (age1..., at least one); the
// vault never holds a key that decrypts it. progress, if not nil, gets the
// store bytes read and the store's size (an estimate of the total). A
// write error to w ends the call with that error; ErrIncomplete means
// the server ended the stream early. Either way what w holds is not a
// backup.
func (c *Client) Backup(ctx context.Context, recipients []string, since uint64, w io.Writer, progress func(read, total int64)) (BackupEnd, error) {
	var end BackupEnd
	stream, err := c.BackupAdmin().Backup(ctx, &pb.BackupRequest{Recipients: recipients, Since: since})
	if err != nil {
		return end, fromStatus(err)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return end, ErrIncomplete
		}
		if err != nil {
			return end, fromStatus(err)
		}
		if len(m.GetChunk()) > 0 {
			n, err := w.Write(m.GetChunk())
			end.Bytes += int64(n)
			if err != nil {
				return end, fmt.Errorf("writing the backup: %w", err)
			}
		}
		if progress != nil {
			progress(m.GetReadBytes(), m.GetTotalBytes())
		}
		if m.GetDone() {
			end.NextSince, end.Signature, end.SigningKeyID = m.GetNextSince(), m.GetSignature(), m.GetSigningKeyId()
			return end, nil
		}
	}
}

// ErasureLedger is the vault's record of erased subjects, without their
// ids: a restore re-erases every subject it names.
type ErasureLedger struct {
	// KeyID is the fingerprint of the ledger key the hashes were made with.
	KeyID   string
	Entries []LedgerEntry
	// MAC is the HMAC-SHA256, under the ledger key, over KeyID and the
	// entries in order; nil from a server older than MACed ledgers. A
	// restore verifies it with the ledger key.
	MAC []byte
}

// LedgerEntry is one erased subject.
type LedgerEntry struct {
	SubjectHash []byte // HMAC-SHA256 of the subject id under the ledger key
	ErasedAt    time.Time
}

// ExportErasureLedger downloads the erasure ledger. Only the stream's
// shape is checked here (one key id, the MAC last and of the right size);
// the MAC itself needs the ledger key, which only the vault's operator
// holds.
func (c *Client) ExportErasureLedger(ctx context.Context) (ErasureLedger, error) {
	var l ErasureLedger
	stream, err := c.BackupAdmin().ExportErasureLedger(ctx, &pb.ExportErasureLedgerRequest{})
	if err != nil {
		return l, fromStatus(err)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if l.KeyID == "" {
				return ErasureLedger{}, fmt.Errorf("%w: no erasure ledger", ErrIncomplete)
			}
			return l, nil
		}
		if err != nil {
			return ErasureLedger{}, fromStatus(err)
		}
		switch {
		case l.MAC != nil:
			return ErasureLedger{}, errors.New("tokenvault: the server sent erasure ledger entries after the ledger's MAC")
		case l.KeyID != "" && m.GetLedgerKeyId() != l.KeyID:
			return ErasureLedger{}, errors.New("tokenvault: the server changed the ledger key id in the middle of the erasure ledger")
		}
		l.KeyID = m.GetLedgerKeyId()
		for _, e := range m.GetEntries() {
			l.Entries = append(l.Entries, LedgerEntry{SubjectHash: e.GetSubjectHash(), ErasedAt: e.GetErasedAt().AsTime()})
		}
		if mac := m.GetLedgerMac(); mac != nil {
			if len(mac) != sha256.Size {
				return ErasureLedger{}, errors.New("tokenvault: the server sent a malformed erasure ledger MAC")
			}
			l.MAC = mac
		}
	}
}
