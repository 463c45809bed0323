package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/testfs"
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
	dir := testfs.CopyTree(t, filepath.Join("testdata", "signed-v2"))
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
			// The backups hold subject ids in the clear (store layout 1);
			// the restored directory does not (layout 2).
			for s := range fx.Subjects {
				if hits := filesHolding(t, target, s); len(hits) != 0 {
					t.Fatalf("the restored directory holds %s: %v", s, hits)
				}
			}
			st, err := badgerstore.Open(target, badgerstore.Options{IDKey: lk}, nil)
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
// directory data-full: the same header, the same trailer (but for next:
// opening data-full migrates it to store layout 2, which writes) and the
// same entries, but for the subject keys, which the migration moved from
// their ids in the clear to hashed and sealed ones: the same subjects with
// the same keys, and no id in the clear. (Badger splits the same entries
// into frames differently from one run to the next, so the frames
// themselves are not compared.)
func TestPayloadAsBefore(t *testing.T) {
	dir, fx := copyFixture(t)
	old, err := os.ReadFile(filepath.Join(dir, "full.payload"))
	if err != nil {
		t.Fatal(err)
	}
	lk, err := keyfile.LoadLedgerKey(filepath.Join(dir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := badgerstore.Open(filepath.Join(dir, "data-full"), badgerstore.Options{IDKey: lk}, nil)
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
	if !bytes.Equal(b[:head], old[:head]) || !bytes.Equal(b[len(b)-trailer:len(b)-8], old[len(old)-trailer:len(old)-8]) {
		t.Fatalf("payload framing differs:\n now %q ... %x\n was %q ... %x", b[:head], b[len(b)-trailer:], b[:head], old[len(old)-trailer:])
	}
	nowInfo, nowKVs := payloadKVs(t, b)
	oldInfo, oldKVs := payloadKVs(t, old)
	if nowInfo.Since != oldInfo.Since || nowInfo.Next != next || next <= oldInfo.Next || len(oldKVs) == 0 {
		t.Fatalf("payload info %+v (next %d), was %+v", nowInfo, next, oldInfo)
	}
	// The entries the layout does not touch, unchanged.
	if got, want := otherThanSubjects(t, nowKVs), otherThanSubjects(t, oldKVs); !slices.EqualFunc(got, want, bytes.Equal) || len(want) == 0 {
		t.Fatalf("payload entries differ: %d now, %d before", len(got), len(want))
	}
	// The subject keys: the same, now under hashed and sealed ids.
	got, want := payloadSubjects(t, lk, b), payloadSubjects(t, lk, old)
	if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
		t.Fatalf("subject keys now %v, before %v", got, want)
	}
	for s := range fx.Subjects {
		if !strings.Contains(fmt.Sprint(want), s+"=") {
			continue // in the incremental backup only
		}
		backup.ReadPayload(bytes.NewReader(b), func(frame []byte) error {
			var l pb.KVList
			proto.Unmarshal(frame, &l)
			for _, kv := range l.Kv {
				if bytes.Contains(kv.Key, []byte(s)) || bytes.Contains(kv.Value, []byte(s)) {
					t.Logf("DEBUG %q %x v%d meta %x", kv.Key, kv.Value, kv.Version, kv.Meta)
				}
			}
			return nil
		})
		if !bytes.Contains(old, []byte(s)) || bytes.Contains(b, []byte(s)) {
			t.Fatalf("subject id %s: in the old payload %v, in the new one %v (want true, false)", s, bytes.Contains(old, []byte(s)), bytes.Contains(b, []byte(s)))
		}
	}
}

// otherThanSubjects leaves out the entries of subject keys (k/, i/ in
// layout 1; h/, j/ and the layout marker in layout 2).
func otherThanSubjects(t *testing.T, kvs [][]byte) [][]byte {
	var out [][]byte
	for _, b := range kvs {
		var kv pb.KV
		if err := proto.Unmarshal(b, &kv); err != nil {
			t.Fatal(err)
		}
		if len(kv.Key) > 1 && kv.Key[1] == '/' && bytes.ContainsRune([]byte("kihjv"), rune(kv.Key[0])) {
			continue
		}
		// Badger numbers the streams of a backup by key range, and the
		// ranges moved with the new entries.
		kv.StreamId = 0
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&kv)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// payloadSubjects lists the subject keys a payload holds, as
// "subject=key id/created/wrapped" in order.
func payloadSubjects(t *testing.T, lk *aead.Key, payload []byte) []string {
	var out []string
	_, err := backup.ReadPayload(bytes.NewReader(payload), func(frame []byte) error {
		return badgerstore.ScanFrame(lk, frame, func(s string, sk vault.SubjectKey) {
			out = append(out, fmt.Sprintf("%s=%x/%d/%x", s, sk.ID, sk.Created.UnixNano(), sk.Wrapped))
		}, func(vault.LedgerEntry) {})
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// filesHolding lists the files under dir that contain needle.
func filesHolding(t *testing.T, dir, needle string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if bytes.Contains(b, []byte(needle)) {
			hits = append(hits, filepath.Base(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
