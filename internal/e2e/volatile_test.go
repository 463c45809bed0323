package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Card security codes (issue 17): volatile tokens through the generated
// client against a real server.

func revealOne(t *testing.T, c *client.Client, tok string) client.Result {
	t.Helper()
	res, err := c.Detokenize(ctx(t), "checkout", tok)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func TestTokenizeCard(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	card := client.Card{Number: "4111 1111 1111 1111", Expiry: "09/2027", SecurityCode: "737", HolderName: "Ada Lovelace"}
	toks, err := c.TokenizeCard(cx, "shopper", card)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(toks.SecurityCode, format.VolatilePrefix) || toks.Number == "" || toks.Expiry == "" || toks.HolderName == "" {
		t.Fatalf("tokens %+v", toks)
	}
	masks, err := c.Mask(cx, toks.Number, toks.Expiry, toks.SecurityCode, toks.HolderName)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"411111******1111", "09/27", "***", "A** L*******"} {
		if masks[i].Err != nil || masks[i].Value != want {
			t.Errorf("mask %d = %+v, want %q", i, masks[i], want)
		}
	}
	res, err := c.Detokenize(cx, "checkout", toks.Number, toks.Expiry, toks.SecurityCode, toks.HolderName)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"4111111111111111", "09/27", "737", "Ada Lovelace"} {
		if res[i].Err != nil || res[i].Value != want {
			t.Errorf("reveal %d = %+v, want %q", i, res[i], want)
		}
	}
	if res[2].Kind != "card-security-code" {
		t.Errorf("kind %q", res[2].Kind)
	}
	// Burned: the code is gone, the rest stays.
	res, err = c.Detokenize(cx, "checkout", toks.SecurityCode, toks.Number)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, client.ErrNotFound) || res[1].Err != nil {
		t.Fatalf("second reveal: %+v", res)
	}

	// A fixed number of reveals, asked per call.
	twice, err := c.TokenizeCard(cx, "shopper", client.Card{Number: "4111111111111111", SecurityCode: "1234", SecurityCodeReveals: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if r := revealOne(t, c, twice.SecurityCode); r.Err != nil || r.Value != "1234" {
			t.Fatalf("reveal %d: %+v", i, r)
		}
	}
	if r := revealOne(t, c, twice.SecurityCode); !errors.Is(r.Err, client.ErrNotFound) {
		t.Fatalf("third reveal: %+v", r)
	}

	// Plain Tokenize gives a code a volatile token too: the vault decides
	// by kind.
	plain, err := c.Tokenize(cx, "shopper", client.Field{Kind: "card-security-code", Value: "4321"})
	if err != nil || !format.IsVolatileToken(plain[0]) {
		t.Fatalf("Tokenize of a code: %q, %v", plain, err)
	}
	if r := revealOne(t, c, plain[0]); r.Err != nil || r.Value != "4321" {
		t.Fatalf("reveal: %+v", r)
	}

	// Bad input names the request's field.
	for _, bad := range []struct {
		card  client.Card
		field string
	}{
		{client.Card{SecurityCode: "737"}, "card_number"},
		{client.Card{Number: "4111111111111111", SecurityCode: "73"}, "security_code"},
		{client.Card{Number: "4111111111111111", Expiry: "13/27"}, "expiry"},
		{client.Card{Number: "4111111111111111", SecurityCode: "737", SecurityCodeReveals: 101}, "security_code_reveals"},
		{client.Card{Number: "4111111111111111", SecurityCode: "737", SecurityCodeTTL: 25 * 60 * 60e9}, "security_code_ttl"},
		{client.Card{Number: "4111111111111111", SecurityCodeReveals: 2}, "security_code"},
	} {
		_, err := c.TokenizeCard(cx, "shopper", bad.card)
		var ce *client.Error
		if !errors.As(err, &ce) || !errors.Is(err, client.ErrInvalidArgument) || ce.Field != bad.field {
			t.Errorf("%+v: %v, want INVALID_ARGUMENT naming %s", bad.card, err, bad.field)
		}
	}

	// Erasing the subject drops its codes at once.
	gone, err := c.TokenizeCard(cx, "leaving", client.Card{Number: "4111111111111111", SecurityCode: "999"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EraseSubject(cx, "leaving"); err != nil {
		t.Fatal(err)
	}
	if r := revealOne(t, c, gone.SecurityCode); !errors.Is(r.Err, client.ErrNotFound) {
		t.Fatalf("code of an erased subject: %+v", r)
	}
	mf := scrape(t, a.MetricsAddr())
	for name, want := range map[string]float64{
		"tokenvault_volatile_tokens_live":          0,
		"tokenvault_volatile_tokens_created_total": 4,
		"tokenvault_volatile_tokens_burned_total":  3,
		"tokenvault_volatile_tokens_erased_total":  1,
		"tokenvault_volatile_reveals_total":        4,
	} {
		if got := value(mf, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestVolatileRestart: a real restart of the server drops every code; the
// card's other tokens survive, and the metric counts the reveal of a code
// this process does not hold.
func TestVolatileRestart(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	toks, err := c.TokenizeCard(ctx(t), "shopper", client.Card{Number: "4111111111111111", SecurityCode: "737"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(e.logs.Bytes(), []byte("dropping volatile tokens at shutdown")) || !bytes.Contains(e.logs.Bytes(), []byte("tokens=1")) {
		t.Fatal("the shutdown did not log the volatile tokens it dropped")
	}
	a, c = e.start(t)
	res, err := c.Detokenize(ctx(t), "checkout", toks.SecurityCode, toks.Number)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, client.ErrNotFound) || !strings.Contains(res[0].Err.Error(), "restarted") || res[1].Err != nil {
		t.Fatalf("after restart: %+v", res)
	}
	if got := value(scrape(t, a.MetricsAddr()), "tokenvault_volatile_reveals_elsewhere_total", nil); got != 1 {
		t.Fatalf("volatile_reveals_elsewhere_total = %v", got)
	}
}

func TestVolatileCap(t *testing.T) {
	e := newEnv(t)
	a, c := e.startWith(t, func(cfg *config.Config) { cfg.Volatile.MaxTokens = 2 })
	cx := ctx(t)
	for i := range 2 {
		if _, err := c.TokenizeCard(cx, "shopper", client.Card{Number: "4111111111111111", SecurityCode: fmt.Sprint(100 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.TokenizeCard(cx, "shopper", client.Card{Number: "4111111111111111", SecurityCode: "102"})
	var ce *client.Error
	if !errors.As(err, &ce) || !errors.Is(err, client.ErrVolatileFull) || ce.Reason != errinfo.VolatileCapacityExhausted ||
		ce.Field != "security_code" || !strings.Contains(ce.Message, "volatile.max_tokens") {
		t.Fatalf("over the cap: %v (%+v)", err, ce)
	}
	if got := value(scrape(t, a.MetricsAddr()), "tokenvault_volatile_tokens_refused_total", nil); got != 1 {
		t.Fatalf("volatile_tokens_refused_total = %v", got)
	}
}

// TestVolatileNeverWritten: after a workload of 200 distinct codes
// (tokenized, some revealed, some masked, some refused, a subject erased,
// a backup taken), no file the server wrote (data directory, keys, audit
// log), no backup (as written and decrypted), no server log line and no
// tokenvault metric holds any code or any code token.
//
// A code is 4 digits, so the search goes by context. In text (logs, the
// audit log, the volatile metrics) a code must never stand alone between
// non-alphanumeric characters, as a value would. Binary files (the store,
// the backup) hold 4-digit runs by the thousand: the card number tokens'
// random digits are stored (a 16-digit token has 13 windows of 4), so a
// raw count finds a tenth of the codes or more whether or not one leaked.
// There, what would show a code stored is its record, which would be
// under its token: the tokens' secrets are searched for (the last 20
// characters, which survive the store's prefix compression of keys), and
// the store's count of token records must be exactly the durable ones.
func TestVolatileNeverWritten(t *testing.T) {
	e := newEnv(t)
	a, c := e.start(t)
	cx := ctx(t)
	var codes, tokens, expiries []string
	for i := range 200 {
		code := fmt.Sprintf("%04d", 7000+i) // no 4-digit run of the workload is 7000-7199 by design
		toks, err := c.TokenizeCard(cx, fmt.Sprintf("shopper-%d", i%20), client.Card{Number: "4111111111111111", SecurityCode: code, Expiry: "09/27"})
		if err != nil {
			t.Fatal(err)
		}
		codes, tokens = append(codes, code), append(tokens, toks.SecurityCode)
		expiries = append(expiries, toks.Expiry)
		switch i % 4 {
		case 0:
			if r := revealOne(t, c, toks.SecurityCode); r.Err != nil || r.Value != code {
				t.Fatalf("reveal: %+v", r)
			}
			revealOne(t, c, toks.SecurityCode) // burned: NOT_FOUND, logged
		case 1:
			c.Mask(cx, toks.SecurityCode)
		}
	}
	c.TokenizeCard(cx, "shopper-0", client.Card{Number: "4111111111111111", SecurityCode: "71234"}) // refused
	if _, err := c.EraseSubject(cx, "shopper-3"); err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	bak := filepath.Join(t.TempDir(), "full.tvbak")
	backupTo(t, c, bak, id.Recipient().String(), 0)
	payload := decryptFile(t, bak, id)
	// The volatile metrics are searched for codes; the others hold byte
	// counts that take any value, 7123 as well (store sizes, memory), so
	// they are searched for tokens only (with the binaries, below).
	_, all := httpGet(t, "http://"+a.MetricsAddr()+"/metrics")
	mf := scrape(t, a.MetricsAddr())
	// 200 card numbers and 200 expiries, less shopper-3's 10 cards; of the
	// codes, 50 were burned and shopper-3's 10 erased.
	for name, want := range map[string]float64{
		"tokenvault_tokens_stored":                 380,
		"tokenvault_volatile_tokens_live":          140,
		"tokenvault_volatile_tokens_created_total": 200,
	} {
		if got := value(mf, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	var metrics string
	for _, line := range strings.Split(all, "\n") {
		if strings.HasPrefix(line, "tokenvault_volatile_") {
			metrics += line + "\n"
		}
	}
	auditPath := a.AuditLogPath()
	c.Close()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}

	audit, err := os.ReadFile(auditPath)
	if err != nil || len(audit) == 0 {
		t.Fatalf("audit log: %d bytes, %v", len(audit), err)
	}
	logs := e.logs.Bytes()
	texts := map[string][]byte{"server log": logs, "audit log": audit, "metrics": []byte(metrics)}
	binaries := map[string][]byte{"backup payload": payload}
	raw, err := os.ReadFile(bak)
	if err != nil {
		t.Fatal(err)
	}
	binaries["backup file"] = raw
	binaries["all metrics"] = []byte(all)
	root := filepath.Dir(e.dataDir) // data, keys and the audit log
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		binaries[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range texts {
		for _, code := range codes {
			if regexp.MustCompile(`(^|[^0-9A-Za-z.])` + code + `([^0-9A-Za-z.]|$)`).Match(b) {
				t.Errorf("%s holds security code %s", name, code)
			}
		}
		binaries[name] = b // tokens are searched for below too
	}
	for name, b := range binaries {
		for _, tok := range tokens {
			if bytes.Contains(b, []byte(tok[len(tok)-20:])) {
				t.Errorf("%s holds a security code token", name)
				break
			}
		}
	}
	// The control: stored tokens are what this search finds (the expiry
	// tokens are as long as the suffix searched for).
	stored := 0
	for _, tok := range expiries {
		if bytes.Contains(payload, []byte(tok)) {
			stored++
		}
	}
	if stored < 190 {
		t.Fatalf("the backup holds only %d of the 190 live expiry tokens: the search would miss stored tokens", stored)
	}
	if !bytes.Contains(logs, []byte("TokenizeCard")) {
		t.Fatal("the server log has no TokenizeCard line: the search saw nothing")
	}
}

// TestTokenizeCardPolicy: the policy decides on each card field's kind
// (orders may tokenize pan and email only), and a reveal of a code is
// refused, item by item, to a caller who may detokenize only pan.
func TestTokenizeCardPolicy(t *testing.T) {
	s := newSecureEnv(t)
	s.start(t)
	cx := ctx(t)
	_, err := s.as(t, "orders").TokenizeCard(cx, "shopper", client.Card{Number: "4111111111111111", SecurityCode: "737"})
	var ce *client.Error
	if !errors.As(err, &ce) || !errors.Is(err, client.ErrPermissionDenied) || ce.Field != "security_code" {
		t.Fatalf("orders tokenizing a code: %v", err)
	}
	if _, err := s.as(t, "orders").TokenizeCard(cx, "shopper", client.Card{Number: "4111111111111111"}); err != nil {
		t.Fatalf("orders tokenizing a card number alone: %v", err)
	}
	toks, err := s.as(t, "setup").TokenizeCard(cx, "shopper", client.Card{Number: "4111111111111111", SecurityCode: "737"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.as(t, "payments").Detokenize(cx, "payment", toks.SecurityCode, toks.Number)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, client.ErrPermissionDenied) || res[1].Err != nil {
		t.Fatalf("payments revealing: %+v", res)
	}
	m, err := s.as(t, "support-ui").Mask(cx, toks.SecurityCode)
	if err != nil || m[0].Err != nil || m[0].Value != "***" {
		t.Fatalf("mask: %+v, %v", m, err)
	}
}
