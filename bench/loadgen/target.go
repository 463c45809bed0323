package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Target is what a run drives: tokenvault, the echo baseline or Vault
// transit.
type Target interface {
	// Kind names the target in reports: "tokenvault", "echo", "vault-transit".
	Kind() string
	Address() string
	// Supports reports whether the target can serve op.
	Supports(op Op) bool
	// Setup prepares what the ops in p need (tokens and blobs to reveal).
	Setup(ctx context.Context, p *Profile) error
	// Do issues one call of op from the worker with random source r. It
	// returns the number of items the call carried and, per item that
	// failed inside a successful call, its code (batch calls have per-item
	// status).
	Do(ctx context.Context, worker int, r *rand.Rand, op Op, p *Profile) (itemErrs []string, err error)
	Close() error
}

// grpcTarget talks tokenvault's gRPC API; the echo baseline speaks the
// same API, so both are measured by exactly the same client code.
type grpcTarget struct {
	kind  string
	addr  string
	conns []*grpc.ClientConn
	// byAddr holds each address's clients; calls go round robin over the
	// addresses (next), and within one to the worker's connection.
	byAddr [][]pb.TokenVaultClient
	next   atomic.Uint64

	tokens []string
	blobs  [][]byte

	distinctOnce sync.Once
	distinct     map[format.Kind][]string // Profile.Distinct values per kind
}

// NewGRPCTarget dials conns connections to addr with opts (see
// DialOptions). kind is "tokenvault" or "echo". addr may list several
// comma-separated addresses (servers sharing one store, such as replicas
// over one PostgreSQL): each gets conns connections, and calls go round
// robin over the addresses.
func NewGRPCTarget(kind, addr string, conns int, opts []grpc.DialOption) (Target, error) {
	t := &grpcTarget{kind: kind, addr: addr}
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		var clients []pb.TokenVaultClient
		for range conns {
			// Each connection gets its own HTTP/2 transport: identical
			// targets would otherwise share one TCP connection.
			// grpc-go shares write buffers by default (WithSharedWriteBuffer is deprecated).
			o := append(cloneOpts(opts), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
			c, err := grpc.NewClient(a, o...)
			if err != nil {
				t.Close()
				return nil, fmt.Errorf("%s: dial %s: %w", kind, a, err)
			}
			c.Connect()
			t.conns = append(t.conns, c)
			clients = append(clients, pb.NewTokenVaultClient(c))
		}
		t.byAddr = append(t.byAddr, clients)
	}
	if len(t.byAddr) == 0 {
		return nil, fmt.Errorf("%s: no address", kind)
	}
	return t, nil
}

func cloneOpts[T any](s []T) []T { return append([]T(nil), s...) }

var _ Target = (*grpcTarget)(nil)

func (t *grpcTarget) Kind() string        { return t.kind }
func (t *grpcTarget) Address() string     { return t.addr }
func (t *grpcTarget) Supports(op Op) bool { return opIndex(op) >= 0 }

func (t *grpcTarget) Close() error {
	var errs []error
	for _, c := range t.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (t *grpcTarget) client(worker int) pb.TokenVaultClient {
	cs := t.byAddr[0]
	if len(t.byAddr) > 1 {
		cs = t.byAddr[t.next.Add(1)%uint64(len(t.byAddr))]
	}
	return cs[worker%len(cs)]
}

func subject(p *Profile, r *rand.Rand) string {
	return p.SubjectPrefix + "-" + strconv.Itoa(r.IntN(p.Subjects))
}

// deterministic is the options of every field under -deterministic
// (shared: requests are only read).
var deterministic = &pb.TokenizeOptions{Mode: pb.TokenMode_TOKEN_MODE_DETERMINISTIC}

func (t *grpcTarget) fields(p *Profile, r *rand.Rand, n int) []*pb.Field {
	if p.Distinct > 0 {
		t.distinctOnce.Do(func() {
			// The same values in every run (and every tvbench process).
			fixed := rand.New(rand.NewPCG(1, 2))
			t.distinct = map[format.Kind][]string{}
			for _, k := range p.Kinds {
				for range p.Distinct {
					t.distinct[k] = append(t.distinct[k], generators[k](fixed))
				}
			}
		})
	}
	fs := make([]*pb.Field, n)
	for i := range fs {
		k := p.Kinds[r.IntN(len(p.Kinds))]
		v := ""
		if p.Distinct > 0 {
			v = t.distinct[k][r.IntN(p.Distinct)]
		} else {
			v = generators[k](r)
		}
		fs[i] = &pb.Field{Kind: pb.Kind(k), Value: v}
		if p.Deterministic {
			fs[i].Options = deterministic
		}
	}
	return fs
}

// Setup makes the pool of tokens and blobs the reading ops draw from,
// spread over the profile's subjects, with Concurrency calls in flight.
func (t *grpcTarget) Setup(ctx context.Context, p *Profile) error {
	needTokens := p.Mix[OpDetokenize] > 0 || p.Mix[OpMask] > 0
	needBlobs := p.Mix[OpDecrypt] > 0
	if !needTokens && !needBlobs {
		return nil
	}
	// Calls of up to 100 items, one subject each, cycling over subjects.
	per := min(max(p.Pool/p.Subjects, 1), 100)
	calls := (p.Pool + per - 1) / per
	tokens := make([][]string, calls)
	blobs := make([][][]byte, calls)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for w := range min(p.Concurrency, calls) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for {
				i := int(next.Add(1) - 1)
				if i >= calls || ctx.Err() != nil {
					return
				}
				subj := p.SubjectPrefix + "-" + strconv.Itoa(i%p.Subjects)
				n := min(per, p.Pool-i*per)
				cctx, cancel := context.WithTimeout(ctx, p.Timeout)
				err := func() error {
					if needTokens {
						resp, err := t.client(w).Tokenize(cctx, &pb.TokenizeRequest{SubjectId: subj, Fields: t.fields(p, r, n)})
						if err != nil {
							return fmt.Errorf("setup: tokenize: %w", err)
						}
						tokens[i] = resp.GetTokens()
					}
					if needBlobs {
						items := make([]*pb.EncryptItem, n)
						for j := range items {
							items[j] = &pb.EncryptItem{Plaintext: []byte(generators[p.Kinds[j%len(p.Kinds)]](r)), Context: blobContext}
						}
						resp, err := t.client(w).Encrypt(cctx, &pb.EncryptRequest{SubjectId: subj, Items: items})
						if err != nil {
							return fmt.Errorf("setup: encrypt: %w", err)
						}
						blobs[i] = resp.GetBlobs()
					}
					return nil
				}()
				cancel()
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range calls {
		t.tokens = append(t.tokens, tokens[i]...)
		t.blobs = append(t.blobs, blobs[i]...)
	}
	return nil
}

const (
	blobContext = "tvbench.field"
	purpose     = "tvbench"
)

func (t *grpcTarget) Do(ctx context.Context, worker int, r *rand.Rand, op Op, p *Profile) ([]string, error) {
	c := t.client(worker)
	switch op {
	case OpTokenize:
		_, err := c.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: subject(p, r), Fields: t.fields(p, r, p.Batch)})
		return nil, err
	case OpDetokenize:
		resp, err := c.Detokenize(ctx, &pb.DetokenizeRequest{Tokens: t.pickTokens(r, p.Batch), Purpose: purpose})
		return itemErrs(resp.GetResults()), err
	case OpMask:
		resp, err := c.Mask(ctx, &pb.MaskRequest{Tokens: t.pickTokens(r, p.Batch)})
		return itemErrs(resp.GetResults()), err
	case OpEncrypt:
		items := make([]*pb.EncryptItem, p.Batch)
		for i := range items {
			items[i] = &pb.EncryptItem{Plaintext: []byte(generators[p.Kinds[r.IntN(len(p.Kinds))]](r)), Context: blobContext}
		}
		_, err := c.Encrypt(ctx, &pb.EncryptRequest{SubjectId: subject(p, r), Items: items})
		return nil, err
	case OpDecrypt:
		items := make([]*pb.DecryptItem, p.Batch)
		for i := range items {
			items[i] = &pb.DecryptItem{Blob: t.blobs[r.IntN(len(t.blobs))], Context: blobContext}
		}
		resp, err := c.Decrypt(ctx, &pb.DecryptRequest{Items: items, Purpose: purpose})
		return itemErrs(resp.GetResults()), err
	}
	return nil, status.Errorf(codes.Unimplemented, "tvbench: no operation %q", op)
}

func (t *grpcTarget) pickTokens(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = t.tokens[r.IntN(len(t.tokens))]
	}
	return out
}

// itemErrs lists the codes of a batch's failed items (nil resp: none).
func itemErrs[R interface{ GetStatus() *pb.ItemStatus }](results []R) []string {
	var bad []string
	for _, res := range results {
		if c := codes.Code(res.GetStatus().GetCode()); c != codes.OK {
			bad = append(bad, c.String())
		}
	}
	return bad
}

// errorCode names an error for the report: the gRPC code, or for Vault the
// HTTP status.
func errorCode(err error) string {
	var he interface{ HTTPStatus() int }
	if errors.As(err, &he) {
		return "HTTP " + strconv.Itoa(he.HTTPStatus())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return codes.DeadlineExceeded.String()
	}
	if errors.Is(err, context.Canceled) {
		return codes.Canceled.String()
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return "Other"
}
