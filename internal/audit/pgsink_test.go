package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// auditDB is a fresh database with the audit schema.
func auditDB(t testing.TB) (*pgtest.DB, *audit.DB) {
	t.Helper()
	pg := pgtest.New(t)
	ctx := context.Background()
	if _, _, err := audit.MigratePostgres(ctx, pg.DSN); err != nil {
		t.Fatal(err)
	}
	db, err := audit.OpenDB(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return pg, db
}

func openOnDB(t testing.TB, path string, key ed25519.PrivateKey, db *audit.DB, replica string, h func(string) (string, error)) *audit.Log {
	t.Helper()
	if h == nil {
		h = testHasher
	}
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, CheckpointEvery: 50, DB: db, Replica: replica, SubjectHash: h,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testHasher stands for SubjectHasher.Hash where the test's entries name
// no subject (the database sink requires one).
func testHasher(s string) (string, error) {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(s)))[:32], nil
}

func reveal(subject string, i int) audit.Entry {
	e := entry(i)
	e.Subject = subject
	return e
}

// dbLines is what the table holds for replica, as a file would.
func dbLines(t testing.TB, dsn, replica string) []byte {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT line FROM tokenvault_audit WHERE replica = $1 ORDER BY seq`, replica)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, ln := range lines {
		b.Write(ln)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Two replicas on one database under concurrent reveals: one verifiable
// chain per replica, each the same bytes as the replica's file, and the
// subject's trail holds both replicas' entries.
func TestDBTwoReplicas(t *testing.T) {
	pg, db := auditDB(t)
	h := newSubjectHasher(t)
	keys := map[string]ed25519.PrivateKey{"eu-1": newKey(t), "eu-2": newKey(t)}
	paths := map[string]string{}
	var wg sync.WaitGroup
	const writers, each = 6, 40
	for replica, key := range keys {
		paths[replica] = filepath.Join(t.TempDir(), "audit.jsonl")
		l := openOnDB(t, paths[replica], key, db, replica, h.Hash)
		var lw sync.WaitGroup
		for w := range writers {
			lw.Add(1)
			go func() {
				defer lw.Done()
				for i := range each {
					subject := "bob"
					if i%2 == 0 {
						subject = "alice"
					}
					if err := l.Write(context.Background(), reveal(subject, w*each+i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lw.Wait()
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ctx := context.Background()
	reps, err := db.Verify(ctx, nil, "")
	if err != nil || len(reps) != 2 {
		t.Fatalf("verify all replicas: %v, %+v", err, reps)
	}
	for replica, key := range keys {
		reps, err := db.Verify(ctx, pubOf(key), replica)
		if err != nil {
			t.Fatalf("%s: %v", replica, err)
		}
		r := reps[0]
		if r.Replica != replica || !r.SignaturesChecked || r.Unsigned != 0 || r.Starts != "" {
			t.Errorf("%s: report %+v", replica, r)
		}
		file, err := os.ReadFile(paths[replica])
		if err != nil {
			t.Fatal(err)
		}
		if rows := dbLines(t, pg.DSN, replica); !bytes.Equal(rows, file) {
			t.Errorf("%s: the table's lines (%d bytes) are not the file's (%d bytes)", replica, len(rows), len(file))
		}
		if uint64(bytes.Count(file, []byte("\n"))) != r.Entries {
			t.Errorf("%s: %d rows verified, the file has %d lines", replica, r.Entries, bytes.Count(file, []byte("\n")))
		}
		// The other replica's key does not verify this chain.
		other := keys["eu-1"]
		if replica == "eu-1" {
			other = keys["eu-2"]
		}
		if _, err := db.Verify(ctx, pubOf(other), replica); !errors.Is(err, audit.ErrTampered) {
			t.Errorf("%s verified with the other replica's key: %v", replica, err)
		}
	}
	trail, err := db.Trail(ctx, hashOf(t, h, "alice"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * writers * each / 2; len(trail) != want {
		t.Fatalf("alice's trail: %d entries, want %d", len(trail), want)
	}
	per := map[string]int{}
	for i, te := range trail {
		per[te.Entry.Replica]++
		if te.Entry.SubjectHash != hashOf(t, h, "alice") {
			t.Fatalf("entry %d is not alice's: %+v", i, te.Entry)
		}
		// Compared as times: RFC 3339 strings drop trailing zeros of the
		// fraction, so "…30.12345Z" sorts after "…30.123457Z" as text.
		if i > 0 && parseTime(t, te.Entry.Time).Before(parseTime(t, trail[i-1].Entry.Time)) {
			t.Fatalf("trail not in time order at %d: %s after %s", i, te.Entry.Time, trail[i-1].Entry.Time)
		}
	}
	if per["eu-1"] != writers*each/2 || per["eu-2"] != writers*each/2 {
		t.Errorf("alice's entries per replica: %v", per)
	}
	if last, err := db.Trail(ctx, hashOf(t, h, "alice"), nil, 5); err != nil || len(last) != 5 || last[4].Entry.Hash != trail[len(trail)-1].Entry.Hash {
		t.Errorf("limit 5: %d entries, %v", len(last), err)
	}
	// The token's keyed hash finds the entries naming it.
	tok := entry(3).Items[0].Token
	if got, err := db.Trail(ctx, "", []string{tok}, 0); err != nil || len(got) != 2 {
		t.Errorf("by token: %d entries (want one per replica), %v", len(got), err)
	}
	// The trail's query can be served by the hash indexes (forced here:
	// on a few hundred rows the planner rightly prefers a scan).
	func() {
		c, err := pgx.Connect(ctx, pg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `SET enable_seqscan = off`); err != nil {
			t.Fatal(err)
		}
		rows, err := c.Query(ctx, `EXPLAIN SELECT line FROM tokenvault_audit WHERE subject_hashes @> ARRAY[$1::text] OR token_hashes && $2::text[]`, "x", []string{"y"})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if p := strings.Join(plan, "\n"); !strings.Contains(p, "tokenvault_audit_subjects") || !strings.Contains(p, "tokenvault_audit_tokens") {
			t.Errorf("the trail query does not use the hash indexes:\n%s", p)
		}
	}()
	// Never the subject id.
	dump := pg.Dump(t)
	if bytes.Contains(dump, []byte("alice")) {
		t.Error("the database holds the subject id in the clear")
	}
}

// writeOnDB writes n entries through a log on db and closes it.
func writeOnDB(t *testing.T, path string, key ed25519.PrivateKey, db *audit.DB, replica string, n int) {
	t.Helper()
	l := openOnDB(t, path, key, db, replica, nil)
	for i := range n {
		if err := l.Write(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// A deleted, altered, renumbered or moved row, or deleted oldest rows,
// fail verification of that replica (and only that one).
func TestDBTamper(t *testing.T) {
	cases := []struct {
		name, sql, want string
	}{
		{"deleted", `DELETE FROM tokenvault_audit WHERE replica = 'a' AND seq = 20`, "sequence number 21, expected 20"},
		{"altered", `UPDATE tokenvault_audit SET line = convert_to(replace(convert_from(line, 'UTF8'), 'payment', 'pAyment'), 'UTF8') WHERE replica = 'a' AND seq = 20`, "hash"},
		{"reordered", `UPDATE tokenvault_audit SET seq = -1 WHERE replica = 'a' AND seq = 20; UPDATE tokenvault_audit SET seq = 20 WHERE replica = 'a' AND seq = 21; UPDATE tokenvault_audit SET seq = 21 WHERE replica = 'a' AND seq = -1`, "renumbered"},
		{"moved", `UPDATE tokenvault_audit SET replica = 'b', seq = 1000 WHERE replica = 'a' AND seq = 20`, ""},
		{"oldest deleted", `DELETE FROM tokenvault_audit WHERE replica = 'a' AND seq < 5`, "rows were deleted"},
		{"head deleted", `DELETE FROM tokenvault_audit WHERE replica = 'a' AND seq > 10`, "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pg, db := auditDB(t)
			key := newKey(t)
			writeOnDB(t, filepath.Join(t.TempDir(), "a.jsonl"), key, db, "a", 40)
			writeOnDB(t, filepath.Join(t.TempDir(), "b.jsonl"), key, db, "b", 10)
			ctx := context.Background()
			if _, err := db.Verify(ctx, pubOf(key), ""); err != nil {
				t.Fatalf("before: %v", err)
			}
			pg.Exec(t, tc.sql)
			reps, err := db.Verify(ctx, pubOf(key), "")
			if tc.name == "head deleted" {
				// Cutting the chain back behind its last checkpoint is the
				// one change the chain cannot show (as for a file); the
				// restart refuses it instead (TestDBRestart).
				if err != nil || reps[0].Unsigned == 0 {
					t.Logf("head cut: %v, %+v", err, reps[0])
				}
				return
			}
			if !errors.Is(err, audit.ErrTampered) || (tc.want != "" && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			for _, r := range reps {
				if (r.Err != nil) != (r.Replica == "a" || tc.name == "moved") {
					t.Errorf("replica %s: %v", r.Replica, r.Err)
				}
			}
		})
	}
}

// The database refusing (connections killed, new ones refused): audited
// writes fail with ErrUnavailable and nothing reaches the file; once it
// answers again writing resumes, and the chain (file and table) is whole.
func TestDBFailClosed(t *testing.T) {
	pg, db := auditDB(t)
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openOnDB(t, path, key, db, "a", nil)
	defer l.Close()
	ctx := context.Background()
	for i := range 5 {
		if err := l.Write(ctx, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(path)
	restore := pg.Refuse(t)
	if err := l.Write(ctx, entry(100)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("write with the database down: %v", err)
	}
	if err := l.Healthy(); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("healthy with the database down: %v", err)
	}
	if err := l.Write(ctx, entry(101)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("second write with the database down: %v", err)
	}
	if _, err := l.Rotate(ctx); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("rotation with the database down: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the file grew while the database refused")
	}
	if st := l.Stats().DB; st.WriteErrors == 0 || st.Lag <= 0 {
		t.Errorf("stats while down: %+v", st)
	}
	restore()
	deadline := time.Now().Add(60 * time.Second)
	for l.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the log did not resume: %v", l.Healthy())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 5 {
		if err := l.Write(ctx, entry(200+i)); err != nil {
			t.Fatal(err)
		}
	}
	// A rotation: the table's chain runs on across the files.
	rotated, err := l.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ctx, entry(300)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	reps, err := db.Verify(ctx, pubOf(key), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyDir(filepath.Dir(path), pubOf(key)); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(filepath.Join(filepath.Dir(path), rotated))
	cur, _ := os.ReadFile(path)
	file := append(old, cur...)
	if !bytes.Equal(dbLines(t, pg.DSN, "a"), file) {
		t.Fatal("table and files differ after the outage")
	}
	if _, err := audit.Verify(bytes.NewReader(file), pubOf(key)); err != nil {
		t.Fatal(err)
	}
	// 1 first checkpoint + 5 + 5 + checkpoints: the refused entries are in neither.
	if bytes.Contains(file, []byte(fmt.Sprintf("%032x", 100))) || bytes.Contains(file, []byte(fmt.Sprintf("%032x", 101))) {
		t.Error("a refused entry was written")
	}
	if st := l.Stats().DB; st.Lag != 0 || st.Batches == 0 || st.Rows < reps[0].Entries {
		t.Errorf("stats after: %+v", st)
	}
}

// A restart continues the replica's chain from the table's last row: the
// same as the file's; a few rows ahead of the file (a crash between the
// two writes) are verified and copied to the file; rows missing from
// the table, or a different last row, refuse the start.
func TestDBRestart(t *testing.T) {
	ctx := context.Background()
	t.Run("continues", func(t *testing.T) {
		pg, db := auditDB(t)
		key := newKey(t)
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		writeOnDB(t, path, key, db, "a", 10)
		writeOnDB(t, path, key, db, "a", 10)
		if _, err := db.Verify(ctx, pubOf(key), "a"); err != nil {
			t.Fatal(err)
		}
		file, _ := os.ReadFile(path)
		if !bytes.Equal(dbLines(t, pg.DSN, "a"), file) {
			t.Fatal("table and file differ")
		}
	})
	t.Run("database ahead", func(t *testing.T) {
		pg, db := auditDB(t)
		key := newKey(t)
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		writeOnDB(t, path, key, db, "a", 10)
		full, _ := os.ReadFile(path)
		// The file lost its last group (entry and closing checkpoint):
		// what a crash after the database's commit leaves.
		lines := bytes.SplitAfter(full, []byte("\n"))
		cut := bytes.Join(lines[:len(lines)-3], nil)
		if err := os.WriteFile(path, cut, 0o600); err != nil {
			t.Fatal(err)
		}
		writeOnDB(t, path, key, db, "a", 3)
		file, _ := os.ReadFile(path)
		if !bytes.HasPrefix(file, full) || !bytes.Equal(dbLines(t, pg.DSN, "a"), file) {
			t.Fatal("the file did not get the database's rows back")
		}
		if _, err := db.Verify(ctx, pubOf(key), "a"); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct{ name, sql string }{
		{"rows deleted", `DELETE FROM tokenvault_audit WHERE seq > 5`},
		{"last row differs", `UPDATE tokenvault_audit SET line = convert_to(replace(convert_from(line, 'UTF8'), '"prev":"', '"prev":"1'), 'UTF8') WHERE seq = (SELECT max(seq) FROM tokenvault_audit)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg, db := auditDB(t)
			key := newKey(t)
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			writeOnDB(t, path, key, db, "a", 10)
			pg.Exec(t, tc.sql)
			_, err := audit.Open(audit.Options{Path: path, SigningKey: key, DB: db, Replica: "a", SubjectHash: testHasher, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if !errors.Is(err, audit.ErrDBDiverged) {
				t.Fatalf("open: %v", err)
			}
		})
	}
	t.Run("new file, table has the chain", func(t *testing.T) {
		_, db := auditDB(t)
		key := newKey(t)
		writeOnDB(t, filepath.Join(t.TempDir(), "audit.jsonl"), key, db, "a", 3)
		_, err := audit.Open(audit.Options{Path: filepath.Join(t.TempDir(), "audit.jsonl"), SigningKey: key, DB: db, Replica: "a", SubjectHash: testHasher, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if !errors.Is(err, audit.ErrDBDiverged) {
			t.Fatalf("open: %v", err)
		}
	})
}

// A file log that switches the database sink on: the replica's rows
// start with the start notice, which the verifier requires.
func TestDBStartsOnExistingFile(t *testing.T) {
	pg, db := auditDB(t)
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := open(t, path, key, 1000)
	for i := range 5 {
		if err := l.Write(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	writeOnDB(t, path, key, db, "a", 5)
	ctx := context.Background()
	reps, err := db.Verify(ctx, pubOf(key), "a")
	if err != nil || reps[0].Starts == "" {
		t.Fatalf("%v %+v", err, reps)
	}
	file, _ := os.ReadFile(path)
	if _, err := audit.Verify(bytes.NewReader(file), pubOf(key)); err != nil {
		t.Fatal(err)
	}
	if rows := dbLines(t, pg.DSN, "a"); !bytes.HasSuffix(file, rows) || !bytes.Contains(rows[:bytes.IndexByte(rows, '\n')], []byte(audit.OpDBStart)) {
		t.Fatal("the table is not the file's tail, starting with the notice")
	}
	pg.Exec(t, `DELETE FROM tokenvault_audit WHERE seq = (SELECT min(seq) FROM tokenvault_audit)`)
	if _, err := db.Verify(ctx, pubOf(key), "a"); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("without the notice: %v", err)
	}
}

// Connections killed under concurrent writes: every write either fails
// with ErrUnavailable or is in both the table and the file; the chain
// stays whole (a COPY whose answer was lost is found by the resync and
// copied to the file, not written twice).
func TestDBConnectionsKilled(t *testing.T) {
	pg, db := auditDB(t)
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openOnDB(t, path, key, db, "a", nil)
	ctx := context.Background()
	var mu sync.Mutex
	var acked []string
	failed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := entry(w*1_000_000 + i)
				err := l.Write(ctx, e)
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, e.Items[0].Token)
				case errors.Is(err, audit.ErrUnavailable):
					failed++
				default:
					t.Errorf("write: %v", err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // the database is back soon
				}
			}
		}()
	}
	for range 5 {
		time.Sleep(150 * time.Millisecond)
		pg.Terminate(t)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	rows := dbLines(t, pg.DSN, "a")
	if !bytes.Equal(rows, file) {
		t.Fatalf("table (%d bytes) and file (%d bytes) differ", len(rows), len(file))
	}
	if _, err := db.Verify(ctx, pubOf(key), "a"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range acked {
		if !bytes.Contains(rows, []byte(tok)) {
			t.Fatalf("an acknowledged entry is missing")
		}
	}
	t.Logf("%d acknowledged, %d refused, write errors %d", len(acked), failed, l.Stats().DB.WriteErrors)
	if len(acked) == 0 {
		t.Fatal("nothing was written")
	}
}

// cutProxy forwards TCP to PostgreSQL; armed, it drops the connection
// instead of forwarding the server's next CommandComplete of a COPY: the
// COPY committed, its answer lost.
type cutProxy struct {
	ln    net.Listener
	armed atomic.Bool
	cuts  atomic.Int32
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				defer c.Close()
				defer s.Close()
				p.forward(c, s)
			}()
		}
	}()
	return p
}

// forward copies the server's messages to the client whole, so that it
// can find a CommandComplete wherever it falls. Looking at the first byte
// of each read missed it now and then: pgx sends a COPY's rows without
// waiting for CopyInResponse, so that message and the CommandComplete
// after it can arrive in one read, which then starts with 'G'. The DSN
// disables TLS (pgtest), so the stream is messages from its first byte:
// a type byte, then a length that counts itself.
func (p *cutProxy) forward(c, s net.Conn) {
	r := bufio.NewReader(s)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > 64<<20 {
			return // not a protocol stream: drop the connection
		}
		msg := make([]byte, len(hdr)+n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(r, msg[len(hdr):]); err != nil {
			return
		}
		if hdr[0] == 'C' && bytes.HasPrefix(msg[len(hdr):], []byte("COPY ")) && p.armed.CompareAndSwap(true, false) {
			p.cuts.Add(1)
			return
		}
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// A COPY that committed but whose answer was lost: the writer reports the
// entry as failed, finds the group in the table when it reads the tail
// back, and writes it to the file too, so that the next groups continue
// one chain in both (instead of colliding with the rows already there).
func TestDBLostCommitAnswer(t *testing.T) {
	pg, _ := auditDB(t)
	u, err := url.Parse(pg.DSN)
	if err != nil {
		t.Skip("pgtest DSN is not a URL")
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	ctx := context.Background()
	db, err := audit.OpenDB(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openOnDB(t, path, key, db, "a", nil)
	defer l.Close()
	if err := l.Write(ctx, entry(1)); err != nil {
		t.Fatal(err)
	}
	proxy.armed.Store(true)
	if err := l.Write(ctx, entry(2)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("write whose answer was lost: %v", err)
	}
	if proxy.cuts.Load() != 1 {
		t.Fatal("the proxy did not cut the answer")
	}
	deadline := time.Now().Add(60 * time.Second)
	for l.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the log did not resume: %v", l.Healthy())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := l.Write(ctx, entry(3)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(dbLines(t, pg.DSN, "a"), file) {
		t.Fatal("table and file differ")
	}
	if !bytes.Contains(file, []byte(entry(2).Items[0].Token)) {
		t.Fatal("the group that committed is not in the file")
	}
	if _, err := db.Verify(ctx, pubOf(key), "a"); err != nil {
		t.Fatal(err)
	}
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
