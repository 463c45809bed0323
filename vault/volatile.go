package vault

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Volatile tokens: card security codes, which PCI DSS forbids storing after
// authorization.
//
// A [format.CardSecurityCode] field of Tokenize never reaches the store.
// Its value is sealed (AES-256-GCM) under a key that exists only in this
// process's memory (memKey: random at start, mlocked where the platform
// allows, zeroed at Close), and kept in an in-memory table until it is
// revealed as many times as it may be (once by default: burned on first
// reveal), expires (1 h by default, at most [MaxVolatileTTL]), its
// subject is erased, or the process exits. Nothing of it goes to the
// store, backups, the audit log (which records tokens only as keyed
// hashes, like every token), logs or metrics (counts only).
//
// The token's shape says it is volatile and names its holder
// ([format.VolatileToken]: tvvol1_<holder>_<secret>). The holder id is
// random at every start unless configured, so after a restart a token is
// recognisably another process's: [ErrVolatileElsewhere] (a NotFound).
// Replicas that know each other ([VolatileOptions.Peers], config
// volatile.peers) derive their holder ids from their replica ids instead,
// and a reveal of a peer's token is forwarded to that peer, which reveals
// (and burns) it as a local reveal: exactly-once holds across replicas
// because only the holder's table has the token.
//
// Every reveal reads the subject's key from the store (one read) before
// it consumes the token, so that an erasure made through another replica
// sharing the store stops it at once; a restriction of processing refuses
// it without consuming it.
//
// Expiry never scans the table: entries sit in a min-heap by expiry, and
// every call (and Stats, which metrics scrape) pops what is due.

// Limits of volatile tokens.
const (
	// MaxVolatileTTL is the hard maximum lifetime (config and per field).
	MaxVolatileTTL = 24 * time.Hour
	// MaxVolatileReveals bounds the reveals one token may allow.
	MaxVolatileReveals = 100
	// DefaultVolatileTTL, DefaultVolatileMaxTokens and
	// DefaultVolatileReveals apply where VolatileOptions leave zero.
	DefaultVolatileTTL       = time.Hour
	DefaultVolatileMaxTokens = 100_000
	DefaultVolatileReveals   = 1
	// memKeySeals bounds the seals under one memory key: its nonces are
	// random (96 bits), safe for far fewer than 2^32 messages. After it a
	// new key seals new tokens; the old one is zeroed with its last token.
	memKeySeals = 1 << 30
)

var (
	// ErrVolatileFull: this process holds its maximum of live volatile
	// tokens (VolatileOptions.MaxTokens). Nothing was stored; retry once
	// some expire or are revealed. A ResourceExhausted of its own.
	ErrVolatileFull = errors.New("volatile token capacity reached")
	// ErrVolatileElsewhere: a volatile token this process did not issue
	// (another replica's, or this process's before a restart, which drops
	// them all). A NotFound: this process cannot reveal it.
	ErrVolatileElsewhere = fmt.Errorf("%w: volatile token held by another process", ErrNotFound)
	// ErrVolatileHolderUnavailable: the volatile token is another
	// replica's and that replica cannot be asked: it is not among the
	// peers, unreachable, or refused the forward. Nothing was revealed
	// here; an Unavailable of its own.
	ErrVolatileHolderUnavailable = errors.New("the replica holding the volatile token is unavailable")
)

// VolatilePeers reveals volatile tokens other replicas hold (the
// replicas' own channel, internal/grpcserver's forwarder).
type VolatilePeers interface {
	// Known reports whether holder is the holder id of a peer.
	Known(holder string) bool
	// RevealVolatile asks the holder to reveal token for purpose, on
	// behalf of the caller in ctx. Errors wrap the vault's sentinels as
	// the holder answered (ErrNotFound, ErrErased, ErrRestricted, …) in a
	// *FieldError, or ErrVolatileHolderUnavailable.
	RevealVolatile(ctx context.Context, holder, token, purpose string) (string, format.Kind, error)
}

// VolatileOptions configure volatile tokens (config section volatile,
// internal/config/volatile.go). Zero values mean the defaults.
type VolatileOptions struct {
	// TTL is the lifetime of a token whose field asks for none (default
	// 1h, at most MaxVolatileTTL).
	TTL time.Duration
	// MaxTokens caps the live volatile tokens of this process (default
	// 100,000); beyond it Tokenize fails with ErrVolatileFull.
	MaxTokens int
	// Reveals is how often a token may be revealed when its field does
	// not say (default 1: burned on first reveal; at most
	// MaxVolatileReveals).
	Reveals int
	// HolderID names this process in its tokens (format.HolderIDLen
	// characters of a-z2-7). Empty: random at every start.
	HolderID string
	// Peers, if set, reveals other replicas' tokens (forwarding); nil: a
	// token of another holder is ErrVolatileElsewhere.
	Peers VolatilePeers
}

func (o *VolatileOptions) setDefaults() {
	if o.TTL == 0 {
		o.TTL = DefaultVolatileTTL
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = DefaultVolatileMaxTokens
	}
	if o.Reveals == 0 {
		o.Reveals = DefaultVolatileReveals
	}
}

func (o VolatileOptions) validate() error {
	switch {
	case o.TTL < 0 || o.TTL > MaxVolatileTTL:
		return fmt.Errorf("vault: volatile TTL must be between 0 and %v", MaxVolatileTTL)
	case o.MaxTokens < 0:
		return errors.New("vault: volatile MaxTokens must not be negative")
	case o.Reveals < 0 || o.Reveals > MaxVolatileReveals:
		return fmt.Errorf("vault: volatile Reveals must be between 0 and %d", MaxVolatileReveals)
	case o.HolderID != "" && !format.ValidHolderID(o.HolderID):
		return fmt.Errorf("vault: volatile HolderID must be %d characters of a-z and 2-7", format.HolderIDLen)
	}
	return nil
}

// isVolatile reports the kinds whose tokens are volatile.
func isVolatile(k format.Kind) bool { return k == format.CardSecurityCode }

// VolatileStats are the volatile tokens' counters (part of [Stats]).
type VolatileStats struct {
	Live     int   // tokens held now
	Created  int64 // since start
	Revealed int64 // reveals served
	Burned   int64 // dropped after their last reveal
	Expired  int64 // dropped at the end of their lifetime
	Erased   int64 // dropped because their subject was erased
	Refused  int64 // tokenize fields refused at the cap
	// Elsewhere counts reveals of tokens of another holder: another
	// replica's, or this process's before a restart dropped them.
	Elsewhere int64
	// Forwarded reveals: sent to a peer holding the token, received from
	// peers, and sent but failed (the holder unavailable or refusing;
	// the holder's NotFound and the like are answers, not failures).
	ForwardsSent, ForwardsReceived, ForwardsFailed int64
}

// memKey is an in-memory sealing key and the number of live tokens it
// sealed.
type memKey struct {
	key   *aead.Key
	live  int
	seals uint64
}

func newMemKey(log *slog.Logger) (*memKey, error) {
	k, err := aead.NewKey()
	if err != nil {
		return nil, err
	}
	// Locked so the key never reaches swap. Go does not move heap objects,
	// so the locked page stays the key's. A failure (RLIMIT_MEMLOCK) is
	// logged, not fatal: the key is still only in memory. The sealed codes
	// need no lock (they are ciphertext); the AES key schedule inside
	// crypto/aes cannot be reached to lock or wipe (see crypto/aead).
	if err := mlock(k.Bytes()); err != nil {
		log.Warn("volatile tokens: could not lock the in-memory key out of swap", "err", err)
	}
	return &memKey{key: k}, nil
}

// zero wipes the key. Its page stays locked: locks are per page and do
// not nest, so unlocking could unlock another key sharing the page.
func (mk *memKey) zero() { mk.key.Zero() }

type volatileEntry struct {
	token   string
	keyID   KeyID
	kind    format.Kind
	key     *memKey
	sealed  []byte
	expires time.Time
	reveals int // left
	index   int // in the heap
}

// volatileArena holds the volatile tokens. Its mutex guards everything
// but the counters.
type volatileArena struct {
	opts VolatileOptions
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex
	cur     *memKey
	byToken map[string]*volatileEntry
	byKey   map[KeyID]map[*volatileEntry]struct{}
	due     expiryHeap

	created, revealed, burned, expired, erased, refused, elsewhere atomic.Int64
	fwdSent, fwdReceived, fwdFailed                                atomic.Int64
}

func newVolatileArena(opts VolatileOptions, now func() time.Time, log *slog.Logger, rand func() (string, error)) (*volatileArena, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	if opts.HolderID == "" {
		var err error
		if opts.HolderID, err = rand(); err != nil {
			return nil, fmt.Errorf("vault: volatile holder id: %w", err)
		}
	}
	cur, err := newMemKey(log)
	if err != nil {
		return nil, err
	}
	return &volatileArena{opts: opts, now: now, log: log, cur: cur,
		byToken: map[string]*volatileEntry{}, byKey: map[KeyID]map[*volatileEntry]struct{}{}}, nil
}

// HolderID is the id this process puts in its volatile tokens.
func (v *Vault) HolderID() string { return v.vol.opts.HolderID }

// volatileAAD binds a sealed code to its token, subject key and kind.
func volatileAAD(token string, id KeyID, k format.Kind) []byte {
	b := make([]byte, 0, len(token)+len(id)+1)
	b = append(b, token...)
	b = append(b, id[:]...)
	return append(b, byte(k))
}

// put seals plain under the current memory key and holds it under token.
// false: the token is taken (a 130-bit collision; the caller redraws).
func (a *volatileArena) put(token string, id KeyID, k format.Kind, plain []byte, ttl time.Duration, reveals int) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweepLocked(now)
	if len(a.byToken) >= a.opts.MaxTokens {
		a.refused.Add(1)
		return false, ErrVolatileFull
	}
	if _, taken := a.byToken[token]; taken {
		return false, nil
	}
	if a.cur.seals >= memKeySeals {
		next, err := newMemKey(a.log)
		if err != nil {
			return false, err
		}
		a.retireLocked(a.cur)
		a.cur = next
	}
	sealed, err := a.cur.key.Seal(nil, plain, volatileAAD(token, id, k))
	if err != nil {
		return false, err
	}
	a.cur.seals++
	a.cur.live++
	e := &volatileEntry{token: token, keyID: id, kind: k, key: a.cur, sealed: sealed, expires: now.Add(ttl), reveals: reveals}
	a.byToken[token] = e
	if a.byKey[id] == nil {
		a.byKey[id] = map[*volatileEntry]struct{}{}
	}
	a.byKey[id][e] = struct{}{}
	heap.Push(&a.due, e)
	a.created.Add(1)
	return true, nil
}

// peek returns the subject key id and kind of a live token.
func (a *volatileArena) peek(token string) (KeyID, format.Kind, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(a.now())
	e, ok := a.byToken[token]
	if !ok {
		return KeyID{}, 0, false
	}
	return e.keyID, e.kind, true
}

// take consumes one reveal of token and returns its value; the token is
// dropped with its last reveal. Of concurrent takes of a last reveal,
// exactly one gets the value (the mutex); the others get false.
func (a *volatileArena) take(token string, id KeyID) (string, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(a.now())
	e, ok := a.byToken[token]
	if !ok || e.keyID != id {
		return "", false, nil
	}
	// A code is at most 4 bytes: it is opened into this buffer, copied
	// into the string the caller returns, and the buffer wiped. (The
	// string itself, like the request's, is the Go runtime's to free.)
	var buf [16]byte
	plain, err := e.key.key.Open(buf[:0], e.sealed, volatileAAD(token, e.keyID, e.kind))
	if err != nil {
		return "", false, fmt.Errorf("%w: volatile token failed authentication", ErrCorrupt)
	}
	s := string(plain)
	clear(buf[:])
	a.revealed.Add(1)
	if e.reveals--; e.reveals <= 0 {
		a.removeLocked(e)
		a.burned.Add(1)
	}
	return s, true, nil
}

// live reports whether token is held (for refuseTokens).
func (a *volatileArena) live(token string) bool {
	_, _, ok := a.peek(token)
	return ok
}

// drop removes token (a Tokenize that failed after making it).
func (a *volatileArena) drop(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.byToken[token]; ok {
		a.removeLocked(e)
	}
}

// dropKey removes every token of the subject key id (erasure).
func (a *volatileArena) dropKey(id KeyID) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for e := range a.byKey[id] {
		a.removeLocked(e)
		n++
	}
	a.erased.Add(int64(n))
	return n
}

func (a *volatileArena) stats() VolatileStats {
	a.mu.Lock()
	a.sweepLocked(a.now())
	live := len(a.byToken)
	a.mu.Unlock()
	return VolatileStats{Live: live, Created: a.created.Load(), Revealed: a.revealed.Load(), Burned: a.burned.Load(),
		Expired: a.expired.Load(), Erased: a.erased.Load(), Refused: a.refused.Load(), Elsewhere: a.elsewhere.Load(),
		ForwardsSent: a.fwdSent.Load(), ForwardsReceived: a.fwdReceived.Load(), ForwardsFailed: a.fwdFailed.Load()}
}

// close drops every token and zeroes the keys: nothing survives the
// process, by design.
func (a *volatileArena) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.byToken); n > 0 {
		a.log.Info("dropping volatile tokens at shutdown (they live only in this process's memory)", "tokens", n)
	}
	for _, e := range a.byToken {
		a.removeLocked(e)
	}
	a.cur.zero()
}

// sweepLocked drops the tokens due at now: heap pops, no scan.
func (a *volatileArena) sweepLocked(now time.Time) {
	for len(a.due) > 0 && !now.Before(a.due[0].expires) {
		a.removeLocked(a.due[0])
		a.expired.Add(1)
	}
}

func (a *volatileArena) removeLocked(e *volatileEntry) {
	delete(a.byToken, e.token)
	if set := a.byKey[e.keyID]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(a.byKey, e.keyID)
		}
	}
	if e.index >= 0 {
		heap.Remove(&a.due, e.index)
	}
	clear(e.sealed)
	e.key.live--
	a.retireLocked(e.key)
}

// retireLocked zeroes a memory key that no longer seals and holds nothing.
func (a *volatileArena) retireLocked(mk *memKey) {
	if mk != a.cur && mk.live == 0 {
		mk.zero()
	}
}

// expiryHeap is a min-heap of entries by expiry.
type expiryHeap []*volatileEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*volatileEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}

// checkVolatileField checks the options of a volatile field and returns
// its lifetime.
func (v *Vault) checkVolatileField(name string, f Field) (time.Duration, error) {
	switch {
	case f.Deterministic:
		return 0, invalid(name+".options.mode", "card security codes get only random, volatile tokens (deterministic tokens would link codes)")
	case f.ChecksumValid:
		return 0, invalid(name+".options.checksum_valid", "card security code tokens have no checksum")
	case f.TTL < 0 || f.TTL > MaxVolatileTTL:
		return 0, invalid(name+".options.ttl", "a volatile token lives at most %v", MaxVolatileTTL)
	case f.Reveals < 0 || f.Reveals > MaxVolatileReveals:
		return 0, invalid(name+".reveals", "must be between 0 (the configured default) and %d", MaxVolatileReveals)
	case f.TTL > 0:
		return f.TTL, nil
	}
	return v.vol.opts.TTL, nil
}

// tokenizeVolatile makes the tokens of a Tokenize call that has volatile
// fields: those first, held in memory, then the durable ones in one store
// transaction as usual. If that fails, the volatile tokens just made are
// dropped, so the call still succeeds or fails as a whole.
func (v *Vault) tokenizeVolatile(ctx context.Context, subject string, all []*pending) ([]string, error) {
	// The subject needs a stored key even for codes alone: every reveal
	// checks that it still exists, which is how an erasure made through
	// any replica stops the reveal.
	c, err := v.keysFor(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	id := c.id
	c.release()
	tokens := make([]string, len(all))
	var durable []*pending
	var made []string
	fail := func(err error) ([]string, error) {
		for _, t := range made {
			v.vol.drop(t)
		}
		return nil, err
	}
	for _, p := range all {
		if !isVolatile(p.field.Kind) {
			durable = append(durable, p)
			continue
		}
		reveals := p.field.Reveals
		if reveals == 0 {
			reveals = v.vol.opts.Reveals
		}
		tok, err := v.putVolatile(item("fields", p.i)+".value", id, p, reveals)
		if err != nil {
			return fail(err)
		}
		made = append(made, tok)
		tokens[p.i] = tok
	}
	if len(durable) > 0 {
		dt, err := v.tokenizeChecked(ctx, subject, durable)
		if err != nil {
			return fail(err)
		}
		for k, p := range durable {
			tokens[p.i] = dt[k]
		}
	}
	return tokens, nil
}

func (v *Vault) putVolatile(field string, id KeyID, p *pending, reveals int) (string, error) {
	plain := []byte(p.norm)
	defer clear(plain)
	for range maxRegenerations {
		tok, err := format.VolatileToken(v.vol.opts.HolderID, v.rand)
		if err != nil {
			return "", fmt.Errorf("making volatile token: %w", err)
		}
		ok, err := v.vol.put(tok, id, p.field.Kind, plain, p.ttl, reveals)
		if errors.Is(err, ErrVolatileFull) {
			return "", &FieldError{Field: field, Err: ErrVolatileFull, Reason: fmt.Sprintf(
				"this server holds its maximum of %d volatile tokens (config volatile.max_tokens); retry when some have expired or been revealed", v.vol.opts.MaxTokens)}
		}
		if err != nil || ok {
			return tok, err
		}
	}
	return "", fmt.Errorf("%w: volatile tokens keep colliding", ErrCorrupt)
}

// RevealForwarded reveals a volatile token this process holds, for a
// reveal another replica forwarded (ReplicaPeer) after authorizing its
// caller. It is a local reveal (one store read, restriction, burn); a
// token of another holder is ErrVolatileElsewhere here, never forwarded
// again, so that a wrong peer list cannot make a loop.
func (v *Vault) RevealForwarded(ctx context.Context, token, purpose string) (string, format.Kind, error) {
	p, err := Purpose(purpose)
	if err != nil {
		return "", 0, err
	}
	if !format.IsVolatileToken(token) {
		return "", 0, invalid("token", "not a volatile token")
	}
	v.vol.fwdReceived.Add(1)
	return v.openVolatile(ctx, "token", token, p, nil)
}

// openElsewhere reveals (or masks) a peer's token through peers.
func (v *Vault) openElsewhere(ctx context.Context, peers VolatilePeers, field, holder, token string, reveal bool, purpose string) (string, format.Kind, error) {
	if !peers.Known(holder) {
		return "", 0, &FieldError{Field: field, Err: ErrVolatileHolderUnavailable,
			Reason: "volatile token of a holder that no replica in volatile.peers has (a replica missing from the list, or a token issued before the peers were configured)"}
	}
	// The caller's permission for the kind, as for a local reveal, before
	// the holder is asked: the holder trusts this replica's authorization
	// (volatile tokens are all card security codes).
	if !kindAllowed(ctx, format.CardSecurityCode) {
		return "", 0, deniedKind(field)
	}
	if !reveal {
		// Masks are constant and use no reveal: not worth a round trip.
		return format.SecurityCodeMask, format.CardSecurityCode, nil
	}
	v.vol.fwdSent.Add(1)
	val, kind, err := peers.RevealVolatile(ctx, holder, token, purpose)
	if err != nil {
		if errors.Is(err, ErrVolatileHolderUnavailable) {
			v.vol.fwdFailed.Add(1)
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			return "", 0, &FieldError{Field: field, Reason: fe.Reason, Err: fe.Err}
		}
		return "", 0, err
	}
	if kind != format.CardSecurityCode {
		return "", 0, fmt.Errorf("%w: a peer revealed a volatile token of kind %v", ErrCorrupt, kind)
	}
	return val, kind, nil
}

// openVolatile reveals (or, with purpose "", masks) a volatile token;
// peers, if not nil, reveals other replicas' tokens.
func (v *Vault) openVolatile(ctx context.Context, field, token, purpose string, peers VolatilePeers) (string, format.Kind, error) {
	reveal := purpose != ""
	if holder, _ := format.VolatileHolder(token); holder != v.vol.opts.HolderID {
		v.vol.elsewhere.Add(1)
		if peers != nil {
			return v.openElsewhere(ctx, peers, field, holder, token, reveal, purpose)
		}
		return "", 0, &FieldError{Field: field, Err: ErrVolatileElsewhere,
			Reason: "volatile token issued by another serving process, or by this one before it restarted (volatile tokens live only in the memory of the process that issued them)"}
	}
	gone := &FieldError{Field: field, Reason: "unknown volatile token, or expired, or already revealed as often as it may be", Err: ErrNotFound}
	id, kind, ok := v.vol.peek(token)
	if !ok {
		return "", 0, gone
	}
	if !kindAllowed(ctx, kind) {
		return "", 0, deniedKind(field)
	}
	if !reveal {
		return format.SecurityCodeMask, kind, nil
	}
	// One store read, whatever the key cache holds: an erasure made
	// through another process sharing the store must stop the reveal.
	_, sk, err := v.store.SubjectKeyByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		v.vol.dropKey(id)
		return "", 0, &FieldError{Field: field, Reason: "the token's subject has been erased", Err: ErrErased}
	}
	if err != nil {
		return "", 0, err
	}
	if !sk.Restricted.IsZero() {
		return "", 0, &FieldError{Field: field, Err: ErrRestricted,
			Reason: "processing of the token's subject is restricted (RestrictSubject): the code is not revealed (nor its reveal used up) until the restriction is lifted"}
	}
	if v.consentRequired(purpose) {
		// Consent is checked on every reveal, a code's too, before its
		// reveal is used up (the subject's keys open its consent records).
		c, err := v.keysByID(ctx, id, true)
		if errors.Is(err, ErrErased) {
			v.vol.dropKey(id)
			return "", 0, &FieldError{Field: field, Reason: "the token's subject has been erased", Err: ErrErased}
		}
		if err != nil {
			return "", 0, err
		}
		err = v.checkConsent(ctx, field, purpose, c)
		c.release()
		if err != nil {
			return "", 0, err
		}
	}
	val, ok, err := v.vol.take(token, id)
	if err != nil {
		return "", 0, err
	}
	if !ok {
		return "", 0, gone // a concurrent reveal took the last one
	}
	return val, kind, nil
}
