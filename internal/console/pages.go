package console

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// What the policy lets a user do, for showing controls. This only hides
// what would be refused: every operation is decided again, by the guard,
// when it is asked for (Guard.Call), with the same Policy.Authorize.

// purposes lists the purposes id may do the reveal operation op for, and
// whether any purpose is allowed; ok reports whether op is allowed at all.
func (c *Console) purposes(id auth.Identity, op auth.Operation) (list []string, anyPurpose, ok bool) {
	if c.o.Policy == nil {
		return nil, true, true // dev mode: everything
	}
	pol := c.o.Policy.Current()
	if pol == nil {
		return nil, false, false
	}
	if !op.Reveal() {
		return nil, false, pol.Authorize(id, op, auth.AnyKind, "") == nil
	}
	file := pol.File()
	for _, role := range pol.Roles(id) {
		for _, perm := range file.Roles[role] {
			if !slices.Contains(perm.Operations, op) {
				continue
			}
			for _, p := range perm.Purposes {
				if p == auth.AnyPurpose {
					anyPurpose = true
				} else if !slices.Contains(list, p) && pol.Authorize(id, op, auth.AnyKind, p) == nil {
					list = append(list, p)
				}
			}
		}
	}
	slices.Sort(list)
	return list, anyPurpose, anyPurpose || len(list) > 0
}

func (c *Console) may(id auth.Identity, op auth.Operation) bool {
	_, _, ok := c.purposes(id, op)
	return ok
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.sessions.get(r); ok {
		http.Redirect(w, r, "/lookup", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// clientCert is the connection's verified client certificate, if any.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return r.TLS.VerifiedChains[0][0]
	}
	return nil
}

func (c *Console) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: c.o.TLS, SameSite: http.SameSiteStrictMode}
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	tok := randomToken()
	http.SetCookie(w, c.cookie(preCookie, tok, 600))
	data := map[string]any{"Title": "Sign in", "CSRF": tok, "Dev": c.o.Policy == nil}
	if cert := clientCert(r); cert != nil {
		if id, err := c.o.Guard.Identify(cert, ""); err == nil {
			data["Cert"] = id.String()
		}
	}
	c.render(w, http.StatusOK, "signin", data)
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	pre, err := r.Cookie(preCookie)
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if perr := r.ParseForm(); perr != nil || err != nil || !sameOrigin(r) || !tokenEqual(r.PostForm.Get("csrf"), pre.Value) {
		c.refuse(w, http.StatusForbidden, "the sign-in form has expired or was not sent from this page: reload it and try again")
		return
	}
	if ok, wait := c.throttle.take(r.RemoteAddr); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)))
		c.o.Logger.Info("console sign-in throttled", "remote", r.RemoteAddr)
		c.refuse(w, http.StatusTooManyRequests, "too many failed sign-ins from this address: wait a little and try again")
		return
	}
	var cert *x509.Certificate
	key := r.PostForm.Get("api_key")
	if r.PostForm.Get("method") == "cert" {
		cert, key = clientCert(r), ""
	}
	id, err := c.o.Guard.Identify(cert, key)
	if err != nil {
		// The error never holds the key; it says what was wrong.
		c.o.Logger.Info("console sign-in refused", "remote", r.RemoteAddr, "err", err)
		c.render(w, http.StatusUnauthorized, "error", map[string]any{"Title": "Sign-in refused", "Message": err.Error()})
		return
	}
	c.throttle.refund(r.RemoteAddr)
	c.o.Logger.Info("console sign-in", "caller", id.String(), "remote", r.RemoteAddr)
	http.SetCookie(w, c.cookie(preCookie, "", -1))
	http.SetCookie(w, c.cookie(sessionCookie, c.sessions.create(id), 0))
	http.Redirect(w, r, "/lookup", http.StatusSeeOther)
}

func (c *Console) signout(q *req) {
	c.sessions.drop(q.key)
	http.SetCookie(q.w, c.cookie(sessionCookie, "", -1))
	http.Redirect(q.w, q.r, "/signin", http.StatusSeeOther)
}

func (c *Console) lookupPage(q *req) {
	c.page(q, http.StatusOK, "lookup", map[string]any{"Title": "Look up a subject"})
}

// lookup keeps the subject in the session: subject ids never go in URLs.
func (c *Console) lookup(q *req) {
	subject := q.r.PostForm.Get("subject_id")
	if subject == "" {
		c.page(q, http.StatusBadRequest, "lookup", map[string]any{"Title": "Look up a subject", "Error": "subject_id: enter a subject id"})
		return
	}
	c.sessions.update(q.key, func(s *session) { s.subject = subject })
	http.Redirect(q.w, q.r, "/subject", http.StatusSeeOther)
}

// tokenRow is one token on the subject page.
type tokenRow struct {
	N             int
	Token         string // only in form fields of a no-store page
	Kind          string
	Created       time.Time
	Expires       time.Time
	Masked        string
	Deterministic bool
	Error         string
}

func (c *Console) subjectPage(q *req) { c.showSubject(q, http.StatusOK, "", nil) }

func (c *Console) subjectPageAt(q *req) {
	c.showSubject(q, http.StatusOK, q.s.next, nil)
}

// showSubject renders a page of the session's subject. The listing is a
// Mask call: it shows what Mask shows (masked values, kinds) and is
// decided and audited as one.
func (c *Console) showSubject(q *req, code int, after string, extra map[string]any) {
	subject := q.s.subject
	if subject == "" {
		http.Redirect(q.w, q.r, "/lookup", http.StatusSeeOther)
		return
	}
	var (
		info     vault.SubjectInfo
		toks     []vault.TokenInfo
		more     bool
		erasedAt time.Time
		held     = true
		rows     []tokenRow
		hashes   = map[string]bool{}
	)
	mreq := &pb.MaskRequest{}
	err := c.o.Guard.CallAudited(q.ctx(), q.s.id, q.addr(), pb.TokenVault_Mask_FullMethodName, subject, mreq, func(ctx context.Context) error {
		var err error
		info, toks, more, err = c.o.Vault.SubjectTokens(ctx, subject, after, PageSize)
		if errors.Is(err, vault.ErrNotFound) {
			held = false
			erasedAt, err = c.o.Vault.ErasedAt(ctx, subject)
			return err
		}
		if err != nil {
			return err
		}
		for _, t := range toks {
			mreq.Tokens = append(mreq.Tokens, t.Token)
		}
		res, err := c.o.Service.Mask(ctx, mreq)
		if err != nil {
			return err
		}
		for i, t := range toks {
			row := tokenRow{N: i + 1, Token: t.Token, Kind: t.Kind.String(), Created: t.Created, Expires: t.Expires, Deterministic: t.Deterministic}
			if r := res.GetResults()[i]; r.GetStatus().GetCode() == 0 {
				row.Masked = r.GetMasked()
			} else {
				row.Error = r.GetStatus().GetMessage()
			}
			rows = append(rows, row)
		}
		return nil
	})
	if err != nil {
		c.fail(q, err)
		return
	}
	id := q.s.id
	purposes, anyPurpose, canReveal := c.purposes(id, auth.OpDetokenize)
	data := map[string]any{"Title": "Subject", "Subject": subject, "Held": held, "ErasedAt": erasedAt,
		"Info": info, "Rows": rows, "More": more, "After": after,
		"CanReveal": canReveal, "Purposes": purposes, "AnyPurpose": anyPurpose,
		"CanExport": c.may(id, auth.OpExport), "CanErase": c.may(id, auth.OpErase),
		"CanRestrict": c.may(id, auth.OpRestrict), "CanRectify": c.may(id, auth.OpRectify)}
	if !erasedAt.IsZero() && c.o.BackupHorizon > 0 {
		data["BackupsBy"] = erasedAt.Add(c.o.BackupHorizon)
	}
	// The next page's cursor stays in the session, not in the page.
	next := ""
	if held && more && len(toks) > 0 {
		next = toks[len(toks)-1].Cursor
	}
	c.sessions.update(q.key, func(s *session) { s.next = next })
	exportPurposes, _, _ := c.purposes(id, auth.OpExport)
	data["ExportPurposes"] = exportPurposes
	// The trail says who saw the subject's data: shown to those who may
	// export it (privacy officers answering a request of access).
	if c.o.Trail != nil && c.may(id, auth.OpExport) {
		if held {
			if err := c.allTokenHashes(q, subject, hashes); err != nil {
				c.fail(q, err)
				return
			}
		}
		trail, err := c.o.Trail.SubjectTrail(q.ctx(), TrailQuery{Subject: subject, Tokens: hashes}, trailLimit)
		if err != nil {
			c.o.Logger.Error("console: reading the trail failed", "err", err)
			data["TrailError"] = "the audit log could not be read"
		}
		data["Trail"], data["ShowTrail"] = trail, true
	}
	for k, v := range extra {
		data[k] = v
	}
	c.page(q, code, "subject", data)
}

// allTokenHashes collects the keyed hashes of every token of subject, to
// find calls that named them in the audit log. Like the page, it is a
// Mask-authorized listing.
func (c *Console) allTokenHashes(q *req, subject string, hashes map[string]bool) error {
	return c.o.Guard.CallAudited(q.ctx(), q.s.id, q.addr(), pb.TokenVault_Mask_FullMethodName, subject, &pb.MaskRequest{}, func(ctx context.Context) error {
		// Every kind: the trail is shown only to identities that may
		// export the subject (all its kinds), and a kind left out here
		// would drop its reveals from the trail without a sign.
		ctx = vault.WithKindFilter(ctx, func(format.Kind) bool { return true })
		after := ""
		for {
			_, toks, more, err := c.o.Vault.SubjectTokens(ctx, subject, after, vault.MaxTokenPage)
			if err != nil {
				return err
			}
			for _, t := range toks {
				hashes[c.o.TokenHash(t.Token)] = true
			}
			if !more || len(toks) == 0 {
				return nil
			}
			after = toks[len(toks)-1].Cursor
		}
	})
}

func (c *Console) reveal(q *req) {
	token, purpose := q.r.PostForm.Get("token"), q.r.PostForm.Get("purpose")
	dreq := &pb.DetokenizeRequest{Tokens: []string{token}, Purpose: purpose}
	var res *pb.DetokenizeResponse
	err := c.o.Guard.Call(q.ctx(), q.s.id, q.addr(), pb.TokenVault_Detokenize_FullMethodName, dreq, func(ctx context.Context) error {
		var err error
		res, err = c.o.Service.Detokenize(ctx, dreq)
		return err
	})
	if err != nil {
		c.fail(q, err)
		return
	}
	if len(res.GetResults()) != 1 {
		c.fail(q, errors.New("console: detokenize answered no result"))
		return
	}
	r := res.GetResults()[0]
	if r.GetStatus().GetCode() != 0 {
		code := codes.Code(r.GetStatus().GetCode())
		c.page(q, httpStatus(status.Error(code, "")), "error", map[string]any{"Title": "Not revealed", "Message": code.String() + ": " + r.GetStatus().GetMessage()})
		return
	}
	c.page(q, http.StatusOK, "reveal", map[string]any{"Title": "Revealed value", "Value": r.GetValue(),
		"Kind": client.KindName(r.GetKind()), "Purpose": purpose,
		"HideAfterMS": c.o.RevealFor.Milliseconds(), "HideAfter": c.o.RevealFor.String()})
}

// exportStream collects the ExportSubject handler's messages.
type exportStream struct {
	ctx  context.Context
	msgs []*pb.ExportSubjectResponse
}

var _ pb.TokenVault_ExportSubjectServer = (*exportStream)(nil)

func (s *exportStream) Send(m *pb.ExportSubjectResponse) error {
	s.msgs = append(s.msgs, m)
	return nil
}
func (s *exportStream) Context() context.Context     { return s.ctx }
func (s *exportStream) SetHeader(metadata.MD) error  { return nil }
func (s *exportStream) SendHeader(metadata.MD) error { return nil }
func (s *exportStream) SetTrailer(metadata.MD)       {}
func (s *exportStream) SendMsg(m any) error {
	if r, ok := m.(*pb.ExportSubjectResponse); ok {
		return s.Send(r)
	}
	return errors.New("console: unexpected message")
}
func (s *exportStream) RecvMsg(any) error { return errors.New("console: no more requests") }

var _ grpc.ServerStream = (*exportStream)(nil)

// export sends the subject's export as the CLI writes it (client.Export):
// the same content as ExportSubject.
func (c *Console) export(q *req) {
	ereq := &pb.ExportSubjectRequest{SubjectId: q.s.subject, Purpose: q.r.PostForm.Get("purpose")}
	var st *exportStream
	err := c.o.Guard.Call(q.ctx(), q.s.id, q.addr(), pb.TokenVault_ExportSubject_FullMethodName, ereq, func(ctx context.Context) error {
		st = &exportStream{ctx: ctx}
		return c.o.Service.ExportSubject(ereq, st)
	})
	if err != nil {
		c.fail(q, err)
		return
	}
	ex := client.Export{Tokens: []client.ExportedToken{}, BlobsNote: client.BlobsNote}
	for _, m := range st.msgs {
		ex.Add(m)
	}
	q.w.Header().Set("Content-Type", "application/json")
	// A fixed file name: the subject id stays out of headers too.
	q.w.Header().Set("Content-Disposition", `attachment; filename="subject-export.json"`)
	enc := json.NewEncoder(q.w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(ex); err != nil {
		c.o.Logger.Info("console: sending an export failed", "err", err)
	}
}

func (c *Console) restrict(q *req) {
	rreq := &pb.RestrictSubjectRequest{SubjectId: q.s.subject}
	c.act(q, pb.TokenVault_RestrictSubject_FullMethodName, rreq, func(ctx context.Context) error {
		_, err := c.o.Service.RestrictSubject(ctx, rreq)
		return err
	})
}

func (c *Console) unrestrict(q *req) {
	ureq := &pb.UnrestrictSubjectRequest{SubjectId: q.s.subject}
	c.act(q, pb.TokenVault_UnrestrictSubject_FullMethodName, ureq, func(ctx context.Context) error {
		_, err := c.o.Service.UnrestrictSubject(ctx, ureq)
		return err
	})
}

func (c *Console) rectify(q *req) {
	rreq := &pb.RectifyTokenRequest{Token: q.r.PostForm.Get("token"), Value: q.r.PostForm.Get("value")}
	c.act(q, pb.TokenVault_RectifyToken_FullMethodName, rreq, func(ctx context.Context) error {
		_, err := c.o.Service.RectifyToken(ctx, rreq)
		return err
	})
}

// act runs one operation and shows the subject page again (after a
// redirect, so that reloading does not repeat it).
func (c *Console) act(q *req, method string, r any, h func(context.Context) error) {
	if err := c.o.Guard.Call(q.ctx(), q.s.id, q.addr(), method, r, h); err != nil {
		c.fail(q, err)
		return
	}
	http.Redirect(q.w, q.r, "/subject", http.StatusSeeOther)
}

func (c *Console) erasePage(q *req) {
	if q.s.subject == "" {
		http.Redirect(q.w, q.r, "/lookup", http.StatusSeeOther)
		return
	}
	c.page(q, http.StatusOK, "erase", map[string]any{"Title": "Erase subject", "Subject": q.s.subject})
}

func (c *Console) erase(q *req) {
	subject := q.s.subject
	if subject == "" || q.r.PostForm.Get("confirm") != subject {
		c.page(q, http.StatusBadRequest, "erase", map[string]any{"Title": "Erase subject", "Subject": subject,
			"Error": "confirm: type the subject id exactly to confirm the erasure"})
		return
	}
	ereq := &pb.EraseSubjectRequest{SubjectId: subject}
	var res *pb.EraseSubjectResponse
	err := c.o.Guard.Call(q.ctx(), q.s.id, q.addr(), pb.TokenVault_EraseSubject_FullMethodName, ereq, func(ctx context.Context) error {
		var err error
		res, err = c.o.Service.EraseSubject(ctx, ereq)
		return err
	})
	if err != nil {
		c.fail(q, err)
		return
	}
	signed := res.GetSignedReceipt()
	c.sessions.update(q.key, func(s *session) { s.receipt, s.receiptSubject = signed, subject })
	data := map[string]any{"Title": "Erasure receipt", "Receipt": res.GetReceipt(),
		"ErasedAt": res.GetReceipt().GetErasedAt().AsTime(), "Signed": len(signed) > 0}
	if t := res.GetReceipt().GetBackupsUndecryptableBy(); t != nil {
		data["BackupsBy"] = t.AsTime()
	}
	verified, keyID, verr := c.verify(signed, subject)
	data["Verified"], data["KeyID"] = verified, keyID
	if verr != nil {
		data["VerifyError"] = verr.Error()
	}
	c.page(q, http.StatusOK, "receipt", map[string]any(data))
}

// verify checks a signed receipt against the vault's receipt public key,
// as anyone holding the receipt and the published key would.
func (c *Console) verify(signed []byte, subject string) (bool, string, error) {
	pub := c.o.Vault.ReceiptPublicKey()
	if pub == nil || len(signed) == 0 {
		return false, "", errors.New("this vault does not sign erasure receipts")
	}
	r, err := receipt.Parse(signed)
	if err != nil {
		return false, "", err
	}
	if r.Subject != subject {
		return false, "", errors.New("the receipt names another subject")
	}
	if err := r.Verify(pub); err != nil {
		return false, receipt.KeyID(pub), err
	}
	return true, receipt.KeyID(pub), nil
}

func (c *Console) receiptFile(q *req) {
	if len(q.s.receipt) == 0 {
		c.page(q, http.StatusNotFound, "error", map[string]any{"Title": "No receipt", "Message": "no erasure receipt in this session"})
		return
	}
	q.w.Header().Set("Content-Type", "application/json")
	q.w.Header().Set("Content-Disposition", `attachment; filename="erasure-receipt.json"`)
	q.w.Write(q.s.receipt)
}

func (c *Console) keysPage(q *req) {
	data := map[string]any{"Title": "Key status", "Provider": c.o.KEKProvider, "Healthy": true,
		"Horizon": c.o.BackupHorizon, "HorizonFromNow": time.Now().Add(c.o.BackupHorizon)}
	if c.o.KEKHealthy != nil {
		if err := c.o.KEKHealthy(); err != nil {
			data["Healthy"], data["HealthError"] = false, err.Error()
		}
	}
	if c.o.Admin == nil {
		c.fail(q, errors.New("console: no key administration configured"))
		return
	}
	kreq := &pb.GetKekStatusRequest{}
	var res *pb.GetKekStatusResponse
	err := c.o.Guard.Call(q.ctx(), q.s.id, q.addr(), pb.KeyAdmin_GetKekStatus_FullMethodName, kreq, func(ctx context.Context) error {
		var err error
		res, err = c.o.Admin.GetKekStatus(ctx, kreq)
		return err
	})
	switch {
	case err != nil && httpStatus(err) == http.StatusForbidden:
		c.fail(q, err)
		return
	case err != nil:
		// A provider without versions (no rotation) still has a health.
		data["StatusError"] = status.Convert(err).Message()
	default:
		data["Status"] = res
		for _, v := range res.GetVersions() {
			if v.GetVersion() == res.GetCurrentVersion() {
				data["LastRotation"] = v.GetCreated().AsTime()
			}
		}
		data["Retention"] = res.GetBackupRetention().AsDuration()
	}
	c.page(q, http.StatusOK, "keys", data)
}
