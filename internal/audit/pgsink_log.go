package audit

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// The writer's side of the database sink (pgsink.go): what Open and
// commit do when Options.DB is set. Writer goroutine only, except for
// the atomics.

// ErrDBDiverged is wrapped when the database's chain for this replica is
// not the one the file continues (rows deleted, a restored database, or
// a second writer using the same replica id): the writer refuses to
// sign anything after it.
var ErrDBDiverged = errors.New("audit: the database's chain does not match the log file")

// dbState is the writer's view of the database.
type dbState struct {
	// head: the seq and hash the database is known to hold for this
	// replica (0: no row yet).
	head     uint64
	headHash string
	// unsure: a write failed; before the next one the writer reads the
	// database's tail back (resync), since a failed COPY may still have
	// committed (its answer lost with the connection).
	unsure  bool
	pending *pendingGroup // the group whose write failed
	down    atomic.Bool   // Healthy refuses while set
	downAt  atomic.Int64  // unix nanos of the first failure of an outage

	errors, batches, rows, lastBatch atomic.Uint64
}

// chainState is what commit changes; saved so that a group the database
// refused can be undone.
type chainState struct {
	seq          uint64
	prev         string
	sinceCP      int
	sinceCPBytes int64
	lastCP       time.Time
	forceCP      bool
}

func (l *Log) chainState() chainState {
	return chainState{l.seq, l.prev, l.sinceCP, l.sinceCPBytes, l.lastCP, l.forceCP}
}

func (l *Log) setChainState(s chainState) {
	l.seq, l.prev, l.sinceCP, l.sinceCPBytes, l.lastCP, l.forceCP = s.seq, s.prev, s.sinceCP, s.sinceCPBytes, s.lastCP, s.forceCP
}

// pendingGroup is a group the database may or may not hold.
type pendingGroup struct {
	lines []byte
	after chainState
	first uint64
	now   time.Time
}

// dbStartNotice is the first entry of a replica's chain in the database
// when its file already held entries (see OpDBStart).
func (l *Log) dbStartNotice() *request {
	return &request{own: true, e: Entry{Type: TypeNotice, Op: OpDBStart,
		Reason: fmt.Sprintf("the database sink starts here; entries 1 to %d are in this replica's files", l.seq)}}
}

// needsDBStart: the next group is the replica's first in the database
// and does not start at seq 1 (nor with a rotation's continue entry,
// which the verifier accepts as a start).
func (l *Log) needsDBStart(group []*request) bool {
	return l.db != nil && l.dbs.head == 0 && l.seq > 0 &&
		!(len(group) > 0 && group[0].own && group[0].e.Type == TypeContinue)
}

// dbInsert writes a group's rows; on failure it undoes the group (saved
// is the state before it) and keeps it as pending.
func (l *Log) dbInsert(now time.Time, rows []dbRow, buf []byte, saved chainState, firstSeq uint64) error {
	if len(rows) == 0 {
		return nil
	}
	err := l.db.insert(l.opts.Replica, now, rows, buf)
	if err != nil {
		l.dbs.errors.Add(1)
		l.dbs.pending = &pendingGroup{lines: append([]byte(nil), buf...), after: l.chainState(), first: firstSeq, now: now}
		l.setChainState(saved)
		l.dbs.unsure = true
		if l.dbs.down.CompareAndSwap(false, true) {
			l.dbs.downAt.Store(l.opts.Now().UnixNano())
			l.log.Error("audit database write failed: audited operations are refused until it answers again", "err", err)
		}
		return err
	}
	l.dbs.head, l.dbs.headHash = l.seq, l.prev
	l.dbs.batches.Add(1)
	l.dbs.rows.Add(uint64(len(rows)))
	l.dbs.lastBatch.Store(uint64(len(rows)))
	return nil
}

// dbResync reads the database's tail after a failed write: the group
// either never arrived (go on) or did (write it to the file too, as if
// its commit had answered); anything else diverged.
func (l *Log) dbResync() error {
	ctx, cancel := l.db.ctx()
	defer cancel()
	seq, line, err := l.db.tail(ctx, l.opts.Replica)
	if err != nil {
		l.dbs.errors.Add(1)
		return err
	}
	hash := ""
	if seq > 0 {
		e, err := ParseLine(line)
		if err != nil {
			l.setFailed(fmt.Errorf("%w: its last row: %v", ErrDBDiverged, err))
			return err
		}
		hash = e.Hash
	}
	p := l.dbs.pending
	switch {
	case seq == l.dbs.head && hash == l.dbs.headHash:
		// The failed group never arrived.
	case p != nil && seq == p.after.seq && hash == p.after.prev:
		// It arrived: its callers were told it failed, which errs on the
		// side of the record; the file gets it too, so both stay one chain.
		_, err := l.f.Write(p.lines)
		if err == nil {
			err = l.f.Sync()
		}
		if err != nil {
			l.log.Error("audit log write failed: audited operations are refused until restart", "path", l.opts.Path, "err", err)
			l.setFailed(err)
			return err
		}
		l.setChainState(p.after)
		l.dbs.head, l.dbs.headHash = seq, hash
		l.wrote(nil, len(p.lines), p.first, p.now)
		if l.ship != nil {
			l.ship.queue(p.lines, l.seq)
		}
	default:
		err := fmt.Errorf("%w: the database holds replica %q's chain to entry %d, this writer expected %d: another server with the same replica id?", ErrDBDiverged, Clip(l.opts.Replica), seq, l.dbs.head)
		l.log.Error("audit database diverged: audited operations are refused until restart", "err", err)
		l.setFailed(err)
		return err
	}
	l.dbs.pending, l.dbs.unsure = nil, false
	if l.dbs.down.CompareAndSwap(true, false) {
		l.log.Info("audit database answers again: audited operations resume")
	}
	return nil
}

// maxDBAhead bounds how many rows the database may hold beyond the file
// at Open: a crash between the database's commit and the file's fsync
// leaves one group and its checkpoint.
const maxDBAhead = maxGroup + 2

// dbContinue checks at Open that the file and the database hold the same
// chain for this replica: the same last entry; or the database a few
// entries ahead (a crash after its commit, before the file's fsync),
// which are verified to chain on and copied to the file; or no row yet
// (the sink is new). cont is what a new current file would start with
// (continueRotated); it is returned unless the database already holds
// its continue entry.
func (l *Log) dbContinue(cont []*request) ([]*request, error) {
	ctx, cancel := l.db.ctx()
	defer cancel()
	seq, line, err := l.db.tail(ctx, l.opts.Replica)
	if err != nil {
		return nil, fmt.Errorf("the audit database: %w", err)
	}
	var head Entry
	if seq > 0 {
		if head, err = ParseLine(line); err != nil {
			return nil, fmt.Errorf("%w: its last row: %v; run tokenvault audit verify --postgres", ErrDBDiverged, err)
		}
	}
	hint := "; run tokenvault audit verify on the directory and with --postgres"
	switch {
	case seq == 0:
		return cont, nil
	case seq == l.seq:
		if head.Hash != l.prev {
			return nil, fmt.Errorf("%w: the last entry of replica %q (%d) differs%s", ErrDBDiverged, Clip(l.opts.Replica), seq, hint)
		}
		l.dbs.head, l.dbs.headHash = seq, head.Hash
		return cont, nil
	case l.seq == 0:
		return nil, fmt.Errorf("%w: the log file is new, but the database holds replica %q's chain to entry %d: restore the audit directory (or give this server its own replica.id)", ErrDBDiverged, Clip(l.opts.Replica), seq)
	case seq < l.seq:
		return nil, fmt.Errorf("%w: the database holds replica %q's chain to entry %d, the file to %d: rows were deleted or the database restored from a backup%s", ErrDBDiverged, Clip(l.opts.Replica), seq, l.seq, hint)
	}
	lines, err := l.db.after(ctx, l.opts.Replica, l.seq, maxDBAhead+1)
	if err != nil {
		return nil, fmt.Errorf("the audit database: %w", err)
	}
	if len(lines) > maxDBAhead {
		return nil, fmt.Errorf("%w: the database holds %d or more entries of replica %q beyond the file's %d%s", ErrDBDiverged, len(lines), Clip(l.opts.Replica), l.seq, hint)
	}
	// The same checks as verifyTail: what the server signs next must
	// continue a history it can vouch for.
	pub := l.opts.SigningKey.Public().(ed25519.PublicKey)
	var buf []byte
	st := l.chainState()
	for _, ln := range lines {
		e, err := ParseLine(ln)
		if err == nil && (e.Seq != st.seq+1 || e.Prev != st.prev) {
			err = errors.New("does not chain to the file's last entry")
		}
		if err == nil && e.Type == TypeCheckpoint {
			err = verifyCheckpoint(&e, pub, l.keyID)
		} else if err == nil {
			err = checkUnsigned(&e)
		}
		if err == nil && st.seq == l.seq && cont != nil && e.Type != TypeContinue {
			err = errors.New("the file was rotated, but this entry is not the new file's continue entry")
		}
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d of the database: %v%s", ErrDBDiverged, st.seq+1, err, hint)
		}
		st.seq, st.prev = e.Seq, e.Hash
		if e.Type == TypeCheckpoint {
			st.sinceCP, st.sinceCPBytes = 0, 0
		} else {
			st.sinceCP++
			st.sinceCPBytes += int64(len(ln) + 1)
		}
		buf = append(append(buf, ln...), '\n')
	}
	if _, err := l.f.Write(buf); err != nil {
		return nil, err
	}
	if err := l.f.Sync(); err != nil {
		return nil, err
	}
	l.log.Warn("audit log: the database held entries the file did not (a crash between the two writes); copied them to the file",
		"entries", len(lines), "seq", st.seq)
	first := l.seq + 1
	st.lastCP = time.Time{} // sign what is unsigned soon
	l.setChainState(st)
	l.wrote(nil, len(buf), first, l.opts.Now())
	l.dbs.head, l.dbs.headHash = st.seq, st.prev
	// A new current file's continue entry, if one was due, is in the
	// database already (checked above): it is the file's first line now.
	return nil, nil
}

// DBStats are the database sink's counters (zero without one).
type DBStats struct {
	WriteErrors uint64 // failed writes (and resync reads) of groups
	Batches     uint64 // groups written, one COPY each
	Rows        uint64 // rows written
	LastBatch   uint64 // rows in the last group
	// Lag: how long the database has been refusing writes (0 while it
	// answers); audited calls are refused meanwhile.
	Lag time.Duration
}

func (l *Log) dbStats() DBStats {
	if l.db == nil {
		return DBStats{}
	}
	st := DBStats{WriteErrors: l.dbs.errors.Load(), Batches: l.dbs.batches.Load(), Rows: l.dbs.rows.Load(), LastBatch: l.dbs.lastBatch.Load()}
	if l.dbs.down.Load() {
		st.Lag = l.opts.Now().Sub(time.Unix(0, l.dbs.downAt.Load()))
	}
	return st
}
