package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// fixture is testdata/signed-v2/fixture.json (see testdata/signed-v2/gen.go:
// the files were written by the code before backups moved out of the
// gRPC handler).
type fixture struct {
	Subjects map[string][]struct {
		Token, Value string
		Kind         format.Kind
	}
	Blob    []byte
	Context string
	Plain   string
}

// copyFixture copies testdata/signed-v2 to a temporary directory, the key
// files private (git keeps no file modes but the executable bit).
func copyFixture(t *testing.T) (string, fixture) {
	t.Helper()
	src := filepath.Join("testdata", "signed-v2")
	dir := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	var fx fixture
	b, err := os.ReadFile(filepath.Join(dir, "fixture.json"))
	if err == nil {
		err = json.Unmarshal(b, &fx)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir, fx
}

// TestRestoreEarlierBackups: backup and ledger files written before the
// backup code moved into this package restore, and what they held comes
// back: the subject erased between the full and the incremental backup
// stays erased, the others reveal their values, restriction and blob.
func TestRestoreEarlierBackups(t *testing.T) {
	ctx := context.Background()
	dir, fx := copyFixture(t)
	f, err := os.Open(filepath.Join(dir, "backup-identity.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := backup.ParseIdentityFile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	vk, err := backup.LoadVerifyKey(filepath.Join(dir, "verify.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := backup.ReadLedger(filepath.Join(dir, "ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		files []string
		hasC  bool
	}{
		"full":             {files: []string{"full.tvbak"}},
		"full+incremental": {files: []string{"full.tvbak", "inc.tvbak"}, hasC: true},
	} {
		t.Run(name, func(t *testing.T) {
			lk, err := keyfile.LoadLedgerKey(filepath.Join(dir, "ledger.key"))
			if err != nil {
				t.Fatal(err)
			}
			var files []string
			for _, f := range tc.files {
				files = append(files, filepath.Join(dir, f))
			}
			target := filepath.Join(t.TempDir(), "restored")
			res, err := backup.Restore(ctx, backup.RestoreOptions{DataDir: target, Open: backup.OpenerOf(badgerstore.NewLoader),
				Files: files, Identities: ids, LedgerKey: lk, Ledger: ledger, VerifyKey: vk})
			if err != nil {
				t.Fatal(err)
			}
			if res.ReErased != 1 || res.Dropped == 0 || res.Ledger != 1 || len(res.Unauthenticated) != 0 {
				t.Fatalf("restore result %+v", res)
			}
			st, err := badgerstore.Open(target, badgerstore.Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			v, err := vault.New(ctx, st, kr, vault.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if _, err := st.SubjectKey(ctx, "fixture-a"); !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("fixture-a after the restore: %v", err)
			}
			if err := v.UnrestrictSubject(ctx, "fixture-b"); err != nil {
				t.Fatalf("fixture-b was restricted: %v", err)
			}
			subjects := []string{"fixture-a", "fixture-b"}
			if tc.hasC {
				subjects = append(subjects, "fixture-c")
			} else if _, err := st.SubjectKey(ctx, "fixture-c"); !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("fixture-c, tokenized after the full backup, is in it: %v", err)
			}
			for _, s := range subjects {
				var toks []string
				for _, tk := range fx.Subjects[s] {
					toks = append(toks, tk.Token)
				}
				rev, err := v.Detokenize(ctx, toks, "test")
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range rev {
					want := fx.Subjects[s][i]
					if s == "fixture-a" {
						if r.Err == nil {
							t.Fatalf("erased fixture-a's token %d reveals", i)
						}
						continue
					}
					if r.Err != nil || r.Value != want.Value || r.Kind != want.Kind {
						t.Fatalf("%s token %d: %+v", s, i, r)
					}
				}
			}
			dec, err := v.Decrypt(ctx, []vault.DecryptItem{{Blob: fx.Blob, Context: fx.Context}}, "test")
			if err != nil || dec[0].Err != nil || string(dec[0].Plaintext) != fx.Plain {
				t.Fatalf("blob: %+v, %v", dec, err)
			}
		})
	}
}

// payloadKVs parses a payload with ReadPayload and returns its framing
// (what precedes and follows the frames) and its entries, each encoded.
func payloadKVs(t *testing.T, payload []byte) (backup.PayloadInfo, [][]byte) {
	t.Helper()
	var kvs [][]byte
	info, err := backup.ReadPayload(bytes.NewReader(payload), func(frame []byte) error {
		var l pb.KVList
		if err := proto.Unmarshal(frame, &l); err != nil {
			return err
		}
		for _, kv := range l.Kv {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(kv)
			if err != nil {
				return err
			}
			kvs = append(kvs, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(kvs, bytes.Compare)
	return info, kvs
}

// TestPayloadAsBefore: the payload of a store is what the code before
// this package framed it wrote, testdata/signed-v2/full.payload of the
// directory data-full: the same header and trailer bytes and the same
// entries. (Badger splits the same entries into frames differently from
// one run to the next, so the frames themselves are not compared.)
func TestPayloadAsBefore(t *testing.T) {
	dir, _ := copyFixture(t)
	old, err := os.ReadFile(filepath.Join(dir, "full.payload"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := badgerstore.Open(filepath.Join(dir, "data-full"), badgerstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var now bytes.Buffer
	next, err := backup.WritePayload(&now, st, 0)
	if err != nil {
		t.Fatal(err)
	}
	const head, trailer = len("tokenvault-backup-payload/v1\n") + 8, 24
	b := now.Bytes()
	if !bytes.Equal(b[:head], old[:head]) || !bytes.Equal(b[len(b)-trailer:], old[len(old)-trailer:]) {
		t.Fatalf("payload framing differs:\n now %q ... %x\n was %q ... %x", b[:head], b[len(b)-trailer:], old[:head], old[len(old)-trailer:])
	}
	nowInfo, nowKVs := payloadKVs(t, b)
	oldInfo, oldKVs := payloadKVs(t, old)
	if nowInfo != oldInfo || nowInfo.Next != next || len(oldKVs) == 0 {
		t.Fatalf("payload info %+v (next %d), was %+v", nowInfo, next, oldInfo)
	}
	if !slices.EqualFunc(nowKVs, oldKVs, bytes.Equal) {
		t.Fatalf("payload entries differ: %d now, %d before", len(nowKVs), len(oldKVs))
	}
}
