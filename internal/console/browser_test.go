package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Browser tests: headless Chromium (Debian's chromium package; .ci/run
// installs it) driven by chromedp against a real server. Locally they skip
// without Chromium; under CI=true they must run.

const chromiumPath = "/usr/bin/chromium"

// chrome starts a fresh headless Chromium (its own profile directory) and
// returns a tab's context. Downloads go to the returned directory; done
// receives each finished download's file path.
type chrome struct {
	ctx       context.Context
	downloads string
	done      chan string

	mu  sync.Mutex
	csp map[string]string // document URL → its Content-Security-Policy
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and no Chromium at %s: the browser tests must run (.ci/run installs the chromium package)", chromiumPath)
		}
		t.Skipf("no Chromium at %s (apt-get install -y chromium); browser tests skipped", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	// The whole browser lives as long as this context: it bounds the test.
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	c := &chrome{ctx: ctx, downloads: t.TempDir(), done: make(chan string, 4), csp: map[string]string{}}
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *browser.EventDownloadProgress:
			if e.State == browser.DownloadProgressStateCompleted {
				c.done <- filepath.Join(c.downloads, e.GUID)
			}
		case *network.EventResponseReceived:
			if e.Type == network.ResourceTypeDocument {
				csp := ""
				for k, v := range e.Response.Headers {
					if strings.EqualFold(k, "Content-Security-Policy") {
						csp, _ = v.(string)
					}
				}
				c.mu.Lock()
				c.csp[e.Response.URL] = csp
				c.mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("network events: %v", err)
	}
	yes := true
	if _, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: c.downloads, EventsEnabled: &yes}); err != nil {
		t.Fatalf("downloads: %v", err)
	}
	return c
}

func (c *chrome) run(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(c.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// download waits for the next finished download and returns its content.
func (c *chrome) download(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-c.done:
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	case <-c.ctx.Done():
		t.Fatal("no download finished")
		return nil
	}
}

// shoot saves a screenshot of the page as a test artefact, in
// $TOKENVAULT_ARTIFACTS if set.
func (c *chrome) shoot(t *testing.T, name string) {
	t.Helper()
	buf, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("TOKENVAULT_ARTIFACTS")
	if dir == "" {
		dir = artefactDir(t)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	artefactOnce sync.Once
	artefacts    string
)

func artefactDir(t *testing.T) string {
	artefactOnce.Do(func() { artefacts = t.TempDir() })
	return artefacts
}

func (c *chrome) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(c.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (c *chrome) eval(t *testing.T, js string) any {
	t.Helper()
	v, err := chromedp.Run(c.ctx, chromedp.Evaluate[any](js))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	return v
}

func (c *chrome) count(t *testing.T, sel string) int {
	t.Helper()
	n, _ := c.eval(t, `document.querySelectorAll(`+jsString(sel)+`).length`).(float64)
	return int(n)
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }

func (c *chrome) signIn(t *testing.T, base, key string) {
	t.Helper()
	c.run(t, "sign-in page", chromedp.Navigate(base+"/signin"), chromedp.WaitVisible(chromedp.ID("api_key")))
	c.shoot(t, "signin")
	c.run(t, "sign in", chromedp.SendKeys(chromedp.ID("api_key"), key), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("subject_id")))
}

func (c *chrome) lookup(t *testing.T, subject string) {
	t.Helper()
	c.run(t, "look up", chromedp.SendKeys(chromedp.ID("subject_id"), subject),
		chromedp.Click(chromedp.ID("lookup")), chromedp.WaitVisible(chromedp.ID("summary-h")))
}

// forgePost submits a hand-made form from the page (as a user could from
// the devtools console), with the session's CSRF token unless noCSRF.
func (c *chrome) forgePost(t *testing.T, action string, fields map[string]string, noCSRF bool) {
	t.Helper()
	f, _ := json.Marshal(fields)
	csrf := `add("csrf", document.querySelector('input[name="csrf"]').value);`
	if noCSRF {
		csrf = ""
	}
	c.eval(t, `(() => { const f = document.createElement("form"); f.method = "post"; f.action = `+jsString(action)+`;
	  const add = (k, v) => { const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i); };
	  const fields = `+string(f)+` || {}; for (const k in fields) add(k, fields[k]);
	  `+csrf+`
	  document.body.appendChild(f); f.submit(); return true; })()`)
	c.run(t, "forged POST "+action, chromedp.WaitVisible(chromedp.ID("error")))
}

func (c *chrome) location(t *testing.T) string {
	t.Helper()
	u, err := chromedp.Run(c.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestBrowserPrivacyOfficer(t *testing.T) {
	s := startServer(t)
	const subject = "dana-7781"
	values := map[string]string{"email": "dana@example.com", "pan": "4111111111111111"}
	toks := s.seed(t, subject, client.Field{Kind: "email", Value: values["email"]},
		client.Field{Kind: "pan", Value: values["pan"], Deterministic: true})
	c := newChrome(t)

	c.signIn(t, s.base, officerKey)
	c.shoot(t, "lookup")
	c.lookup(t, subject)
	if u := c.location(t); u != s.base+"/subject" {
		t.Errorf("subject page URL %q: the subject id must not be in a URL", u)
	}
	if got := c.count(t, "#tokens tbody tr"); got != 2 {
		t.Fatalf("%d token rows, want 2", got)
	}
	table := c.text(t, "#tokens")
	for _, v := range values {
		if strings.Contains(table, v) {
			t.Fatalf("the token list shows a value in the clear")
		}
	}
	if !strings.Contains(table, "1111") || !strings.Contains(table, "@example.com") {
		t.Errorf("the list does not show the masked values: %q", table)
	}
	c.shoot(t, "subject")

	// Reveal the first row's value for a purpose: shown, then hidden.
	kind := strings.TrimSpace(c.text(t, "#tokens tbody tr:first-child td.kind"))
	c.run(t, "reveal", chromedp.SendKeys(chromedp.ID("purpose-1"), "support-call"),
		chromedp.Click(chromedp.CSS("#tokens tbody tr:first-child button.reveal")),
		chromedp.WaitVisible(chromedp.ID("value")))
	if got := c.text(t, "#value"); got != values[kind] {
		t.Fatalf("revealed %q, want the %s value", got, kind)
	}
	c.shoot(t, "reveal")
	c.run(t, "value hides", chromedp.WaitVisible(chromedp.CSS(`#value[data-hidden="true"]`)))
	html, err := chromedp.Run(c.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, values[kind]) {
		t.Fatal("the value is still in the page after it was hidden")
	}
	s.waitEntry(t, "the console's reveal", func(e audit.Entry) bool {
		return e.Caller == "api_key:officer" && e.Op == "detokenize" && e.Purpose == "support-call" &&
			e.Outcome == "OK" && len(e.Items) == 1 && e.Items[0].Outcome == "OK" && e.Items[0].Kind == kind
	})

	// The trail names the reveal: who, what for, which token (by hash).
	c.run(t, "subject page", chromedp.Navigate(s.base+"/subject"), chromedp.WaitVisible(chromedp.ID("trail")))
	if trail := c.text(t, "#trail"); !strings.Contains(trail, "detokenize") || !strings.Contains(trail, "support-call") ||
		!strings.Contains(trail, "api_key:officer") {
		t.Errorf("the trail does not show the reveal: %q", trail)
	}
	c.shoot(t, "subject-trail")

	// A request without the CSRF token is refused.
	c.run(t, "subject page", chromedp.Navigate(s.base+"/subject"), chromedp.WaitVisible(chromedp.ID("tokens")))
	c.forgePost(t, "/restrict", nil, true)
	if msg := c.text(t, "#error"); !strings.Contains(msg, "CSRF") {
		t.Fatalf("POST without CSRF token: %q", msg)
	}
	c.run(t, "subject page", chromedp.Navigate(s.base+"/subject"), chromedp.WaitVisible(chromedp.ID("restricted")))
	if got := c.text(t, "#restricted"); got != "not restricted" {
		t.Fatalf("after a refused restrict: %q", got)
	}

	// Export: the download is ExportSubject's content.
	c.run(t, "export", chromedp.Click(chromedp.ID("export")))
	got := c.download(t)
	officer, err := client.Dial(s.app.Addr(), client.WithAPIKey(officerKey))
	if err != nil {
		t.Fatal(err)
	}
	defer officer.Close()
	want, err := officer.ExportSubject(testCtx(t), subject, "dsar")
	if err != nil {
		t.Fatal(err)
	}
	var ex client.Export
	if err := json.Unmarshal(got, &ex); err != nil {
		t.Fatalf("export download is not JSON: %v", err)
	}
	a, _ := json.Marshal(ex)
	b, _ := json.Marshal(want)
	if !bytes.Equal(a, b) {
		t.Fatalf("export download differs from ExportSubject:\n got %s\nwant %s", a, b)
	}
	s.waitEntry(t, "the console's export", func(e audit.Entry) bool {
		return e.Caller == "api_key:officer" && e.Op == "export" && e.SubjectHash == s.subjectHash(t, subject) && e.Outcome == "OK"
	})

	// Key status.
	c.run(t, "key status", chromedp.Navigate(s.base+"/keys"), chromedp.WaitVisible(chromedp.ID("provider")))
	if got := c.text(t, "#provider"); got != "local" {
		t.Errorf("KEK provider %q", got)
	}
	c.shoot(t, "keys")

	// Erase: confirmed by typing the id; the receipt is verified on the
	// page and downloadable.
	c.run(t, "erase page", chromedp.Navigate(s.base+"/subject"), chromedp.WaitVisible(chromedp.ID("erase-link")),
		chromedp.Click(chromedp.ID("erase-link")), chromedp.WaitVisible(chromedp.ID("confirm")))
	c.shoot(t, "erase")
	c.run(t, "erase", chromedp.SendKeys(chromedp.ID("confirm"), subject), chromedp.Click(chromedp.ID("erase")),
		chromedp.WaitVisible(chromedp.ID("verified")))
	if msg := c.text(t, "#verified"); !strings.HasPrefix(msg, "Signature verified") {
		t.Fatalf("receipt: %q", msg)
	}
	c.shoot(t, "receipt")
	c.run(t, "download receipt", chromedp.Click(chromedp.ID("download-receipt")))
	r, err := receipt.Parse(c.download(t))
	if err != nil {
		t.Fatalf("downloaded receipt: %v", err)
	}
	pub, err := officer.ReceiptPublicKey(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(pub); err != nil || r.Subject != subject {
		t.Fatalf("downloaded receipt does not verify: %v", err)
	}

	// Afterwards: erased, when, and nothing to reveal.
	c.run(t, "erased subject", chromedp.Click(chromedp.ID("back")), chromedp.WaitVisible(chromedp.ID("state")))
	if st := c.text(t, "#state"); !strings.Contains(st, "Erased on") || !strings.Contains(st, r.ErasedAt.UTC().Format("2006-01-02 15:04:05")) {
		t.Fatalf("erased subject's page: %q", st)
	}
	if by := c.text(t, "#backups-by"); !strings.Contains(by, r.BackupsUndecryptableBy.UTC().Format("2006-01-02 15:04:05")) {
		t.Errorf("erased subject's backup horizon %q, want the receipt's %v", by, r.BackupsUndecryptableBy)
	}
	if n := c.count(t, "button.reveal"); n != 0 {
		t.Fatalf("%d reveal controls on an erased subject", n)
	}
	// Calls that name the subject stay in its trail after the erasure
	// (reveals name tokens, which the vault no longer knows).
	trail := c.text(t, "#trail")
	for _, w := range []string{"export", "dsar", "erase", "api_key:officer"} {
		if !strings.Contains(trail, w) {
			t.Errorf("the trail lacks %q", w)
		}
	}
	c.shoot(t, "erased")
	c.forgePost(t, "/reveal", map[string]string{"token": toks[0], "purpose": "support-call"}, false)
	if msg := c.text(t, "#error"); !strings.Contains(msg, "NotFound") {
		t.Fatalf("reveal after erasure: %q", msg)
	}

	// Nothing of the subject in the server's log (debug level).
	logs := s.logs.String()
	for _, secret := range append([]string{subject, values["email"], values["pan"]}, toks...) {
		if strings.Contains(logs, secret) {
			t.Errorf("the server log contains a subject id, value or token")
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.csp) == 0 {
		t.Fatal("no document responses seen")
	}
	for u, csp := range c.csp {
		if csp != wantCSP {
			t.Errorf("%s: Content-Security-Policy %q", u, csp)
		}
	}
}

func TestBrowserSupport(t *testing.T) {
	s := startServer(t)
	const subject = "erin-1203"
	toks := s.seed(t, subject, client.Field{Kind: "email", Value: "erin@example.com"})
	c := newChrome(t)
	c.signIn(t, s.base, supportKey)
	c.lookup(t, subject)
	c.run(t, "tokens", chromedp.WaitVisible(chromedp.ID("tokens")))
	for _, sel := range []string{"button.reveal", "#export", "#erase-link", "button.rectify", "#restrict", "#trail"} {
		if n := c.count(t, sel); n != 0 {
			t.Errorf("support sees %s", sel)
		}
	}
	if !strings.Contains(c.text(t, "#tokens"), "@example.com") {
		t.Error("support does not see the masked value")
	}
	c.shoot(t, "support")
	c.forgePost(t, "/reveal", map[string]string{"token": toks[0], "purpose": "support-call"}, false)
	msg := c.text(t, "#error")
	if !strings.Contains(msg, "PermissionDenied") || strings.Contains(msg, "erin@example.com") {
		t.Fatalf("support's forged reveal: %q", msg)
	}
	if c.count(t, "#value") != 0 {
		t.Fatal("a value was shown to support")
	}
}
