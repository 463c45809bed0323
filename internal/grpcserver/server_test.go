package grpcserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
	"github.com/tokenvault/tokenvault/vault/format"
)

// TestKindNumbers: the proto enum and format.Kind agree on every number.
func TestKindNumbers(t *testing.T) {
	for _, k := range format.Kinds() {
		want := "KIND_" + strings.ToUpper(strings.ReplaceAll(k.String(), "-", "_"))
		if got := pb.Kind(k).String(); got != want {
			t.Errorf("format kind %s = proto %s, want %s", k, got, want)
		}
	}
	if len(format.Kinds())+1 != len(pb.Kind_name) {
		t.Errorf("format has %d kinds, proto %d (incl. unspecified)", len(format.Kinds()), len(pb.Kind_name))
	}
}

func newTestServer(t testing.TB) *Server {
	dir := t.TempDir()
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "k.age"), IdentityFile: filepath.Join(dir, "id")}, true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(context.Background(), store, kr, vault.Options{ConsentRequired: func(p string) bool { return p == "marketing" }, Holds: fuzzHolds})
	if err != nil {
		t.Fatal(err)
	}
	return New(v, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// FuzzRequests feeds arbitrary requests to every RPC. No input may panic or
// produce Internal/Unknown (bad input is the caller's fault and must say
// which field); whatever tokenizes must detokenize back to its normalized
// value, and whatever encrypts must decrypt back. A field with an enum
// value the proto does not define (kind, options.mode) never tokenizes:
// it is INVALID_ARGUMENT, an unknown mode naming its field.
func FuzzRequests(f *testing.F) {
	seed := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"}}}))
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_EMAIL, Value: "a@b.co",
		Options: &pb.TokenizeOptions{Mode: pb.TokenMode_TOKEN_MODE_DETERMINISTIC}}}}))
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s\xff", Fields: []*pb.Field{{Kind: pb.Kind(77), Value: "x"}}}))
	f.Add(seed(&pb.EncryptRequest{SubjectId: "s", Items: []*pb.EncryptItem{{Plaintext: []byte("p"), Context: "c"}}}))
	f.Add(seed(&pb.DetokenizeRequest{Tokens: []string{"4111110000001111"}, Purpose: "p"}))
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_NAME, Value: "x",
		Options: &pb.TokenizeOptions{Ttl: durationpb.New(time.Nanosecond)}}}}))
	f.Add(seed(&pb.RectifyTokenRequest{Token: "4111110000001111", Value: "4111111111111111"}))
	// Unknown enum values: a mode past the last, a negative one, and a
	// kind past the last next to a valid field.
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"},
		{Kind: pb.Kind_KIND_EMAIL, Value: "a@b.co", Options: &pb.TokenizeOptions{Mode: pb.TokenMode(3)}}}}))
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_NAME, Value: "Ada",
		Options: &pb.TokenizeOptions{Mode: pb.TokenMode(-1)}}}}))
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"},
		{Kind: pb.Kind(len(pb.Kind_name)), Value: "Ada"}}}))
	f.Add(seed(&pb.GrantConsentRequest{SubjectId: "s", Purpose: "marketing", Source: "form"}))
	f.Add(seed(&pb.WithdrawConsentRequest{SubjectId: "s", Purpose: " marketing", Source: "call"}))
	f.Add(seed(&pb.WatchErasuresRequest{Consumer: "crm"}))
	f.Add(seed(&pb.AckErasuresRequest{Consumer: "crm", Sequence: 1}))
	// Legal holds: a known class, an unknown one, and two in one call.
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111",
		Options: &pb.TokenizeOptions{Hold: "tax"}}}}))
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111",
		Options: &pb.TokenizeOptions{Hold: "nope"}}}}))
	f.Add(seed(&pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111",
		Options: &pb.TokenizeOptions{Hold: "tax"}}, {Kind: pb.Kind_KIND_NAME, Value: "Ada"}}}))
	f.Add(seed(&pb.EncryptRequest{SubjectId: "s", Items: []*pb.EncryptItem{{Plaintext: []byte("p"), Context: "c", Hold: "tax"},
		{Plaintext: []byte("q"), Hold: "\x00"}}}))
	f.Add(seed(&pb.GetHoldReceiptsRequest{SubjectId: "s"}))
	f.Add(seed(&pb.TokenizeCardRequest{SubjectId: "s", CardNumber: "4111111111111111", Expiry: "09/27", SecurityCode: "737",
		HolderName: "Ada Lovelace", SecurityCodeReveals: 2, SecurityCodeTtl: durationpb.New(time.Minute)}))
	f.Add(seed(&pb.TokenizeCardRequest{SubjectId: "s", CardNumber: "4111111111111111", SecurityCodeReveals: -1}))
	// Forwarded reveals of volatile tokens (peer.go): well-shaped tokens
	// of this holder and another, a blank purpose, not a token.
	f.Add(seed(&pb.RevealVolatileRequest{Token: format.VolatilePrefix + "aaaaaaaa_" + strings.Repeat("b", 26), Purpose: "payment",
		OriginalCaller: "api_key:checkout", FromReplica: "replica-b"}))
	f.Add(seed(&pb.RevealVolatileRequest{Token: format.VolatilePrefix + "zzzzzzzz_" + strings.Repeat("2", 26), Purpose: " "}))
	f.Add(seed(&pb.RevealVolatileRequest{Token: "4111110000001111", Purpose: "p", OriginalCaller: "\xff"}))
	f.Add([]byte{})
	s := newTestServer(f)
	ps := NewPeerServer(s.v, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(method string, err error) {
			if c := status.Code(err); c == codes.Internal || c == codes.Unknown {
				t.Fatalf("%s: %v", method, err)
			}
		}
		var tr pb.TokenizeRequest
		if proto.Unmarshal(b, &tr) == nil {
			resp, err := s.Tokenize(ctx, &tr)
			check("Tokenize", err)
			badMode, badKind := -1, false
			for i, fl := range tr.Fields {
				if _, ok := pb.TokenMode_name[int32(fl.GetOptions().GetMode())]; !ok && badMode < 0 {
					badMode = i
				}
				if _, ok := pb.Kind_name[int32(fl.GetKind())]; !ok {
					badKind = true
				}
			}
			// Modes are checked before anything else of the request.
			if want := fmt.Sprintf("fields[%d].options.mode: ", badMode); badMode >= 0 &&
				(status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), want)) {
				t.Fatalf("unknown mode of field %d: %v", badMode, err)
			}
			if badKind && status.Code(err) != codes.InvalidArgument {
				t.Fatalf("a field of unknown kind: %v", err)
			}
			if err == nil {
				det, err := s.Detokenize(ctx, &pb.DetokenizeRequest{Tokens: resp.Tokens, Purpose: "fuzz"})
				check("Detokenize", err)
				for i, r := range det.GetResults() {
					want, _ := format.Normalize(format.Kind(tr.Fields[i].Kind), tr.Fields[i].Value)
					if tr.Fields[i].GetOptions().GetTtl() != nil && codes.Code(r.Status.Code) == codes.NotFound {
						continue // a retention short enough to have expired already
					}
					if r.Status.Code != 0 || r.Value != want {
						t.Fatalf("round trip of field %d: %v", i, r.Status)
					}
				}
			}
			checkHolds(t, s, &tr, err) // last: it erases the subject
		}
		var cr pb.TokenizeCardRequest
		if proto.Unmarshal(b, &cr) == nil {
			resp, err := s.TokenizeCard(ctx, &cr)
			check("TokenizeCard", err)
			if err == nil {
				toks := []string{resp.CardNumberToken, resp.ExpiryToken, resp.SecurityCodeToken, resp.HolderNameToken}
				vals := []string{cr.CardNumber, cr.Expiry, cr.SecurityCode, cr.HolderName}
				kinds := []format.Kind{format.PAN, format.CardExpiry, format.CardSecurityCode, format.Name}
				for i, tok := range toks {
					if (tok == "") != (vals[i] == "") {
						t.Fatalf("TokenizeCard: field %d: value given %v, token %q", i, vals[i] != "", tok)
					}
					if tok == "" {
						continue
					}
					det, err := s.Detokenize(ctx, &pb.DetokenizeRequest{Tokens: []string{tok}, Purpose: "fuzz"})
					check("Detokenize", err)
					want, _ := format.Normalize(kinds[i], vals[i])
					r := det.GetResults()[0]
					if kinds[i] == format.CardSecurityCode && cr.SecurityCodeTtl != nil && codes.Code(r.Status.Code) == codes.NotFound {
						continue // a lifetime short enough to have ended already
					}
					if r.Status.Code != 0 || r.Value != want {
						t.Fatalf("TokenizeCard round trip of field %d: %v", i, r.Status)
					}
				}
			}
		}
		var rv pb.RevealVolatileRequest
		if proto.Unmarshal(b, &rv) == nil {
			_, err := ps.RevealVolatile(ctx, &rv)
			check("RevealVolatile", err)
			// The request's purpose on a code this server holds: revealed
			// exactly once if the purpose is one, else refused naming it.
			card, err := s.TokenizeCard(ctx, &pb.TokenizeCardRequest{SubjectId: "fuzz-peer", CardNumber: "4111111111111111", SecurityCode: "123"})
			if err != nil {
				t.Fatal(err)
			}
			fwd := &pb.RevealVolatileRequest{Token: card.SecurityCodeToken, Purpose: rv.Purpose, OriginalCaller: rv.OriginalCaller, FromReplica: rv.FromReplica}
			resp, err := ps.RevealVolatile(ctx, fwd)
			if p, perr := vault.Purpose(rv.Purpose); perr != nil {
				if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "purpose: ") {
					t.Fatalf("RevealVolatile with purpose %q: %v", rv.Purpose, err)
				}
			} else if p == "marketing" { // consent-based in this fixture; no consent given
				if status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("RevealVolatile for marketing without consent: %v %v", resp, err)
				}
			} else {
				if err != nil || resp.GetValue() != "123" || resp.GetKind() != pb.Kind_KIND_CARD_SECURITY_CODE {
					t.Fatalf("RevealVolatile: %v %v", resp, err)
				}
				if _, err := ps.RevealVolatile(ctx, fwd); status.Code(err) != codes.NotFound {
					t.Fatalf("second RevealVolatile: %v", err)
				}
			}
		}
		var dr pb.DetokenizeRequest
		if proto.Unmarshal(b, &dr) == nil {
			resp, err := s.Detokenize(ctx, &dr)
			check("Detokenize", err)
			for _, r := range resp.GetResults() {
				if c := codes.Code(r.Status.Code); c == codes.Internal || c == codes.Unknown {
					t.Fatalf("Detokenize item: %v", r.Status)
				}
			}
			_, err = s.Mask(ctx, &pb.MaskRequest{Tokens: dr.Tokens})
			check("Mask", err)
		}
		var er pb.EncryptRequest
		if proto.Unmarshal(b, &er) == nil {
			resp, err := s.Encrypt(ctx, &er)
			check("Encrypt", err)
			if err == nil {
				items := make([]*pb.DecryptItem, len(resp.Blobs))
				for i, bl := range resp.Blobs {
					items[i] = &pb.DecryptItem{Blob: bl, Context: er.Items[i].Context}
				}
				dec, err := s.Decrypt(ctx, &pb.DecryptRequest{Items: items, Purpose: "fuzz"})
				check("Decrypt", err)
				for i, r := range dec.GetResults() {
					if r.Status.Code != 0 || string(r.Plaintext) != string(er.Items[i].Plaintext) {
						t.Fatalf("encrypt round trip of item %d: %v", i, r.Status)
					}
				}
			}
		}
		var xr pb.DecryptRequest
		if proto.Unmarshal(b, &xr) == nil {
			resp, err := s.Decrypt(ctx, &xr)
			check("Decrypt", err)
			for _, r := range resp.GetResults() {
				if c := codes.Code(r.Status.Code); c == codes.Internal || c == codes.Unknown {
					t.Fatalf("Decrypt item: %v", r.Status)
				}
			}
		}
		var hr pb.GetHoldReceiptsRequest
		if proto.Unmarshal(b, &hr) == nil {
			_, err := s.GetHoldReceipts(ctx, &hr)
			check("GetHoldReceipts", err)
		}
		var rr pb.RectifyTokenRequest
		if proto.Unmarshal(b, &rr) == nil {
			_, err := s.RectifyToken(ctx, &rr)
			check("RectifyToken", err)
		}
		var sr pb.RestrictSubjectRequest
		if proto.Unmarshal(b, &sr) == nil {
			_, err := s.RestrictSubject(ctx, &sr)
			check("RestrictSubject", err)
			_, err = s.UnrestrictSubject(ctx, &pb.UnrestrictSubjectRequest{SubjectId: sr.SubjectId})
			check("UnrestrictSubject", err)
		}
		var ar pb.EraseSubjectRequest
		if proto.Unmarshal(b, &ar) == nil {
			_, err := s.EraseSubject(ctx, &ar)
			check("EraseSubject", err)
		}
		fuzzIssue16(t, s, b, check)
	})
}

// TestInternalErrorsAreGeneric: an unexpected error reaches the client as
// "internal error (ref …)", with details only in the server log.
func TestInternalErrorsAreGeneric(t *testing.T) {
	var logs strings.Builder
	s := New(nil, slog.New(slog.NewTextHandler(&logs, nil)))
	err := s.toStatus("Test", io.ErrUnexpectedEOF)
	st := status.Convert(err)
	if st.Code() != codes.Internal || !strings.HasPrefix(st.Message(), "internal error (ref ") || strings.Contains(st.Message(), "EOF") {
		t.Fatalf("status = %v", st)
	}
	ref := strings.TrimSuffix(strings.TrimPrefix(st.Message(), "internal error (ref "), ")")
	if !strings.Contains(logs.String(), ref) || !strings.Contains(logs.String(), "unexpected EOF") {
		t.Fatalf("log lacks the ref or the error: %s", logs.String())
	}
}
