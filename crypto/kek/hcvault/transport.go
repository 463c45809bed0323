package hcvault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/tokenvault/tokenvault/crypto/kek"
)

// op names an operation in errors and says how to read Vault's HTTP 400.
type op struct {
	name string
	// blobInput: the request carries wrapped blobs, so a 400 from Vault
	// (bad prefix, bad base64, failed authentication, retired version) means
	// the blob cannot be unwrapped.
	blobInput bool
}

var (
	opWrap     = op{name: "wrap"}
	opUnwrap   = op{name: "unwrap", blobInput: true}
	opRotate   = op{name: "rotate"}
	opRetire   = op{name: "retire"}
	opVersions = op{name: "versions"}
	opHealth   = op{name: "health check"}
	opLogin    = op{name: "authenticate"}

	// Rewrap is a decrypt (of the caller's blobs), then an encrypt.
	opRewrapDecrypt = op{name: "rewrap", blobInput: true}
	opRewrapEncrypt = op{name: "rewrap"}
)

// maxResponseSize bounds what is read from Vault: a full rewrap batch is
// about 40 KiB.
const maxResponseSize = 4 << 20

// Request and response bodies of transit's endpoints. Plaintexts and
// associated data are []byte so that encoding/json does the base64 (transit
// wants both base64-encoded) and no DEK passes through a string. An empty
// associated_data means none to transit; it is only ever empty for blobs
// wrapped before wraps were bound.
type (
	encryptItem struct {
		Plaintext      []byte `json:"plaintext"`
		AssociatedData []byte `json:"associated_data"`
	}
	decryptItem struct {
		Ciphertext     string `json:"ciphertext"`
		AssociatedData []byte `json:"associated_data,omitempty"`
	}
	batchRequest[T any] struct {
		BatchInput []T `json:"batch_input"`
	}
	batchResult struct {
		Ciphertext string `json:"ciphertext"`
		Plaintext  []byte `json:"plaintext"`
		Error      string `json:"error"`
	}
	batchResponse struct {
		BatchResults []batchResult `json:"batch_results"`
	}
)

// batchCiphertexts sends encrypt items to path as batch_input, maxBatch per
// request, and returns the bound blobs in input order. Any failed item
// fails the call.
func batchCiphertexts(ctx context.Context, p *provider, o op, path string, items []encryptItem) ([][]byte, error) {
	out := make([][]byte, 0, len(items))
	for chunk := range slices.Chunk(items, maxBatch) {
		res, err := batch(ctx, p, o, path, chunk, len(out))
		if err != nil {
			return nil, err
		}
		for i, r := range res {
			if err := checkCiphertext(o, r.Ciphertext); err != nil {
				return nil, fmt.Errorf("%w (item %d)", err, len(out)+i)
			}
		}
		for _, r := range res {
			out = append(out, bound(r.Ciphertext))
		}
	}
	return out, nil
}

// batchPlaintexts sends decrypt items (at most maxBatch; offset is their
// position in the caller's batch) to path as batch_input and returns the
// plaintexts in input order; the caller zeroes them. Any failed item fails
// the call.
func batchPlaintexts(ctx context.Context, p *provider, o op, path string, items []decryptItem, offset int) ([][]byte, error) {
	res, err := batch(ctx, p, o, path, items, offset)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(res))
	for i, r := range res {
		if len(r.Plaintext) == 0 {
			for _, r := range res {
				clear(r.Plaintext)
			}
			return nil, fmt.Errorf("hcvault: %s: item %d: Vault returned an empty plaintext", o.name, offset+i)
		}
		out[i] = r.Plaintext
	}
	return out, nil
}

// batch sends one batch_input request and checks the results: as many as
// items, none failed (the error names the first failed item; offset is the
// chunk's position in the caller's batch).
func batch[T any](ctx context.Context, p *provider, o op, path string, items []T, offset int) ([]batchResult, error) {
	var res batchResponse
	if err := p.do(ctx, o, http.MethodPut, path, batchRequest[T]{items}, &res); err != nil {
		if offset > 0 {
			// Vault numbers the items of the request it refused.
			err = fmt.Errorf("%w (in the request of items %d to %d)", err, offset, offset+len(items)-1)
		}
		return nil, err
	}
	fail := func(err error) ([]batchResult, error) {
		for _, r := range res.BatchResults {
			clear(r.Plaintext)
		}
		return nil, err
	}
	if len(res.BatchResults) != len(items) {
		return fail(fmt.Errorf("hcvault: %s: Vault returned %d results for %d items", o.name, len(res.BatchResults), len(items)))
	}
	for i, item := range res.BatchResults {
		switch {
		case item.Error != "" && o.blobInput:
			return fail(fmt.Errorf("hcvault: %s: item %d: %w: %s", o.name, offset+i, kek.ErrInvalidWrapped, sanitize(item.Error)))
		case item.Error != "":
			return fail(fmt.Errorf("hcvault: %s: item %d: Vault refused it: %s", o.name, offset+i, sanitize(item.Error)))
		}
	}
	return res.BatchResults, nil
}

// checkCiphertext checks the shape of a ciphertext Vault returned. A bad one
// is Vault's fault (or a proxy's), not the caller's: the error deliberately
// does not wrap kek.ErrInvalidWrapped.
func checkCiphertext(o op, ct string) error {
	if _, err := parseCiphertext(ct); err != nil {
		return fmt.Errorf("hcvault: %s: Vault returned an unexpected ciphertext: %v", o.name, err)
	}
	return nil
}

// do sends one request to Vault and decodes the response's "data" into out
// (out may be nil). The request is bounded by ctx and the per-call timeout;
// the error it returns is classified (see the package doc).
//
// Bodies are marshalled here, not by the api client, so that the buffers
// holding base64 DEKs can be zeroed afterwards. That is best effort: the
// HTTP and TLS layers keep copies in their own buffers.
func (p *provider) do(ctx context.Context, o op, method, path string, in, out any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hcvault: %s: %w", o.name, err)
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("hcvault: %s: encode request: %w", o.name, err)
		}
		defer clear(body)
	}
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()

	send := func() (*api.Response, error) {
		if method == http.MethodGet {
			return p.client.Logical().ReadRawWithContext(callCtx, path)
		}
		return p.client.Logical().WriteRawWithContext(callCtx, path, body)
	}
	resp, err := send()
	if err != nil {
		// classify reads the response body: classify once per response.
		cerr := p.classify(ctx, o, resp, err)
		if resp != nil {
			resp.Body.Close()
		}
		if !errors.Is(cerr, ErrPermissionDenied) || !p.reloginAfterDenial(callCtx) {
			return cerr
		}
		// The token may have expired between its renewals (a busy host,
		// a renewal that came late): with a fresh one the request is tried
		// once more. A real denial stays one.
		if resp, err = send(); err != nil {
			cerr := p.classify(ctx, o, resp, err)
			if resp != nil {
				resp.Body.Close()
			}
			return cerr
		}
	}
	if resp != nil {
		defer resp.Body.Close()
	}
	if out == nil {
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	defer clear(raw)
	if err != nil {
		return p.classify(ctx, o, nil, err)
	}
	if len(raw) > maxResponseSize {
		return fmt.Errorf("hcvault: %s: Vault response exceeds %d bytes", o.name, maxResponseSize)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return fmt.Errorf("hcvault: %s: empty response from Vault (HTTP %d)", o.name, resp.StatusCode)
	}
	// Decoding into the interface field fills the caller's struct in place.
	env := struct {
		Data any `json:"data"`
	}{Data: out}
	if err := json.Unmarshal(raw, &env); err != nil {
		// The json error may quote part of the body: leave it out.
		return fmt.Errorf("hcvault: %s: malformed response from Vault", o.name)
	}
	return nil
}

// classify maps a failed request to the package's error contract. ctx is the
// caller's context, to tell a caller who gave up from a Vault that did not
// answer in time.
func (p *provider) classify(ctx context.Context, o op, resp *api.Response, err error) error {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		if ctxErr := ctx.Err(); errors.Is(ctxErr, context.Canceled) {
			return fmt.Errorf("hcvault: %s: %w", o.name, ctxErr)
		}
		// Refused or reset connections, DNS and TLS failures, and the
		// per-call deadline all mean the same to callers: try again later.
		return fmt.Errorf("hcvault: %s: Vault is unreachable: %w: %w", o.name, kek.ErrUnavailable, err)
	}

	msg := vaultMessage(re, resp)
	code := re.StatusCode
	switch {
	case code == http.StatusForbidden:
		return fmt.Errorf("hcvault: %s: %w (HTTP 403: %s)", o.name, ErrPermissionDenied, msg)
	case o == opLogin && code == http.StatusInternalServerError && strings.Contains(strings.ToLower(msg), "invalid"):
		// Vault 1.13 answers a wrong AppRole secret ID with HTTP 500
		// ("invalid secret id"); that is bad credentials, not an outage.
		return fmt.Errorf("hcvault: %s: Vault rejected the credentials (HTTP %d: %s)", o.name, code, msg)
	case code == http.StatusTooManyRequests || code == http.StatusPreconditionFailed || code >= 500:
		// 503 is a sealed Vault or one without an active node; 412 a
		// performance standby that has not caught up; 429 rate limiting.
		return fmt.Errorf("hcvault: %s: Vault is unavailable (HTTP %d: %s): %w", o.name, code, msg, kek.ErrUnavailable)
	case code == http.StatusNotFound && o == opLogin:
		return fmt.Errorf("hcvault: authenticate: Vault has no %s auth method at %q (HTTP 404)", p.cfg.Auth.Method, p.cfg.Auth.MountPath)
	case code == http.StatusNotFound:
		return fmt.Errorf("hcvault: %s: Vault has no transit key %q at mount %q (HTTP 404)", o.name, p.cfg.Key, p.cfg.Mount)
	case code == http.StatusBadRequest && strings.Contains(msg, "key not found"):
		// Transit's "encryption key not found": a configuration problem,
		// not a bad blob.
		return fmt.Errorf("hcvault: %s: transit key %q does not exist at mount %q", o.name, p.cfg.Key, p.cfg.Mount)
	case code == http.StatusBadRequest && o.blobInput:
		return fmt.Errorf("hcvault: %s: %w: %s", o.name, kek.ErrInvalidWrapped, msg)
	default:
		return fmt.Errorf("hcvault: %s: Vault refused the request (HTTP %d: %s)", o.name, code, msg)
	}
}

// vaultMessage extracts Vault's explanation of an error response: its
// "errors" list, or for a batch answered with HTTP 400 the first item error.
func vaultMessage(re *api.ResponseError, resp *api.Response) string {
	if re.RawError {
		// Not Vault's JSON (a proxy's error page, say): the status will do.
		return http.StatusText(re.StatusCode)
	}
	if len(re.Errors) > 0 {
		return sanitize(strings.Join(re.Errors, "; "))
	}
	if resp != nil && resp.Body != nil {
		// Errors only: a partly failed decrypt batch also carries
		// plaintexts, which must not be decoded into memory here.
		var batch struct {
			Data struct {
				BatchResults []struct {
					Error string `json:"error"`
				} `json:"batch_results"`
			} `json:"data"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, maxResponseSize)).Decode(&batch) == nil {
			for i, item := range batch.Data.BatchResults {
				if item.Error != "" {
					return "item " + strconv.Itoa(i) + ": " + sanitize(item.Error)
				}
			}
		}
	}
	return http.StatusText(re.StatusCode)
}

// sanitize keeps Vault's messages on one line and short, for logs.
func sanitize(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const limit = 300
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// reloginAfterDenial logs in again after Vault refused a request with HTTP
// 403, for the auth methods that can log in (AppRole, Kubernetes; a
// configured token cannot be replaced). It reports whether there is a
// fresh token to retry with: a log-in by this call, or by another one
// less than a second ago.
func (p *provider) reloginAfterDenial(ctx context.Context) bool {
	if p.cfg.Auth.Method == AuthToken || p.cfg.Auth.Method == "" {
		return false
	}
	p.reloginMu.Lock()
	defer p.reloginMu.Unlock()
	if time.Since(p.lastRelogin) < time.Second {
		return true
	}
	if _, err := p.login(ctx); err != nil {
		p.logger.Warn("Vault refused a request and logging in again failed", "err", err)
		return false
	}
	p.lastRelogin = time.Now()
	p.logger.Info("logged in to Vault again after a refused request (expired token?)", "method", p.cfg.Auth.Method)
	return true
}
