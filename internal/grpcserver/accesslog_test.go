package grpcserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// lockedBuffer is a log sink the server's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveOnLoopback serves s on 127.0.0.1 with a tap handle that identifies
// every caller as the API key "ops" (as the guard's tap does) and returns
// a client.
func serveOnLoopback(t testing.TB, s *Server) pb.TokenVaultClient {
	t.Helper()
	identify := grpc.InTapHandle(func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		return withIdentity(ctx, auth.Identity{Name: "ops", Method: auth.MethodAPIKey}), nil
	})
	gs, _ := NewGRPCServer(s, nil, identify)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewTokenVaultClient(cc)
}

// TestAccessLog: with the access log on (the default), every call writes
// one info line with method, request id, caller, code and duration, and
// never the value, the token or the subject id; off, successful calls
// write nothing at info and failures still do.
func TestAccessLog(t *testing.T) {
	const value, subject = "4111111111111111", "subject-7f3a"
	for _, access := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[access], func(t *testing.T) {
			var logs lockedBuffer
			s := newTestServer(t)
			s.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			if !New(nil, nil).AccessLog {
				t.Fatal("New: access log off by default")
			}
			s.AccessLog = access
			tv := serveOnLoopback(t, s)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "req-ok")
			resp, err := tv.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: subject, Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: value}}})
			if err != nil {
				t.Fatal(err)
			}
			ctx = metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "req-bad")
			if _, err := tv.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: subject, Fields: []*pb.Field{{Value: value}}}); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("tokenize without a kind: %v", err)
			}
			out := logs.String()
			lines := map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				for _, id := range []string{"req-ok", "req-bad"} {
					if strings.Contains(l, "request_id="+id+" ") {
						lines[id] = l
					}
				}
			}
			ok, bad := lines["req-ok"], lines["req-bad"]
			if access {
				for _, want := range []string{"level=INFO", "msg=rpc", "method=/tokenvault.v1.TokenVault/Tokenize", "caller=api_key:ops", "code=OK", "duration="} {
					if !strings.Contains(ok, want) {
						t.Errorf("access line %q lacks %q", ok, want)
					}
				}
			} else if ok != "" {
				t.Errorf("access log off, yet a successful call was logged at info: %q", ok)
			}
			for _, want := range []string{"level=INFO", "caller=api_key:ops", "code=InvalidArgument", "error="} {
				if !strings.Contains(bad, want) {
					t.Errorf("failure line %q lacks %q", bad, want)
				}
			}
			for _, secret := range []string{value, subject, resp.GetTokens()[0]} {
				if strings.Contains(out, secret) {
					t.Errorf("the log holds a value, token or subject id: %s", out)
				}
			}
		})
	}
}

// BenchmarkAccessLog: the access line's cost for a real Tokenize call over
// loopback gRPC, logging to a file (as a server whose stderr goes to a
// file). Two servers are called in alternating blocks of accessBlock calls
// in the same run, so that the machine's noise falls on both alike:
// off-vs-on has the access log off on A and on on B; off-vs-off, the
// control, has it off on both (its ratio shows the noise). Reported per
// call and per server: cpu-ns (the process's user+system CPU: client and
// server, both in this process) and wall ns; B/A-cpu is the ratio.
func BenchmarkAccessLog(b *testing.B) {
	b.Run("off-vs-on", func(b *testing.B) { benchAlternating(b, false, true) })
	b.Run("off-vs-off", func(b *testing.B) { benchAlternating(b, false, false) })
}

func benchAlternating(b *testing.B, accessA, accessB bool) {
	const accessBlock = 200
	var tv [2]pb.TokenVaultClient // A, B
	for i, access := range []bool{accessA, accessB} {
		f, err := os.Create(filepath.Join(b.TempDir(), "log"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		s := newTestServer(b)
		s.log = slog.New(slog.NewTextHandler(f, nil))
		s.AccessLog = access
		tv[i] = serveOnLoopback(b, s)
	}
	req := &pb.TokenizeRequest{SubjectId: "bench", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"}}}
	for _, c := range tv {
		if _, err := c.Tokenize(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	var cpu, wall [2]time.Duration
	var calls [2]int
	mode, inBlock := 0, 0
	cpu0, wall0 := processCPU(b), time.Now()
	end := func() {
		cpu[mode] += processCPU(b) - cpu0
		wall[mode] += time.Since(wall0)
		calls[mode] += inBlock
	}
	for b.Loop() {
		if _, err := tv[mode].Tokenize(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		if inBlock++; inBlock == accessBlock {
			end()
			mode, inBlock = 1-mode, 0
			cpu0, wall0 = processCPU(b), time.Now()
		}
	}
	end()
	if calls[0] == 0 || calls[1] == 0 {
		return // too few iterations for both servers (b.N probing)
	}
	per := func(d [2]time.Duration, m int) float64 { return float64(d[m]) / float64(calls[m]) }
	b.ReportMetric(per(cpu, 0), "A-cpu-ns/call")
	b.ReportMetric(per(cpu, 1), "B-cpu-ns/call")
	b.ReportMetric(per(cpu, 1)/per(cpu, 0), "B/A-cpu")
	b.ReportMetric(per(wall, 0), "A-ns/call")
	b.ReportMetric(per(wall, 1), "B-ns/call")
}

// BenchmarkLogCall: the log line alone (no gRPC, no vault), to a file.
// kv-pairs is the line written with key/value arguments, as logCall did
// before: each value is boxed into an interface.
func BenchmarkLogCall(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := New(nil, slog.New(slog.NewTextHandler(f, nil)))
	ctx := withIdentity(context.Background(), auth.Identity{Name: "spiffe://example/svc", Method: auth.MethodMTLS})
	const method, id = "/tokenvault.v1.TokenVault/Tokenize", "0123456789abcdef"
	for _, access := range []bool{false, true} {
		b.Run(map[bool]string{true: "access=on", false: "access=off"}[access], func(b *testing.B) {
			s.AccessLog = access
			b.ReportAllocs()
			for b.Loop() {
				s.logCall(ctx, method, id, time.Now(), nil)
			}
		})
	}
	b.Run("kv-pairs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			caller, _ := identityFrom(ctx)
			s.log.Info("rpc", "method", method, "request_id", id, "caller", caller.id.String(), "code", codes.OK.String(), "duration", time.Since(start))
		}
	})
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pcHandler records the pc of each record it handles.
type pcHandler struct {
	slog.Handler
	pcs *[]uintptr
}

func (h pcHandler) Handle(ctx context.Context, r slog.Record) error {
	*h.pcs = append(*h.pcs, r.PC)
	return h.Handler.Handle(ctx, r)
}

// TestLogCallLine: the line logCall hands the handler directly is the
// line LogAttrs wrote (success and failure; time and duration aside), at
// the same levels, and no stack is walked for it (the record has no pc).
func TestLogCallLine(t *testing.T) {
	noClock := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == "duration" {
			return slog.Attr{}
		}
		return a
	}
	ctx := withIdentity(context.Background(), auth.Identity{Name: "ops", Method: auth.MethodAPIKey})
	const method, id = "/tokenvault.v1.TokenVault/Detokenize", "req-1"
	failed := status.Error(codes.NotFound, "no such token")
	for _, format := range []string{"text", "json"} {
		for _, access := range []bool{true, false} {
			var got, want bytes.Buffer
			var pcs []uintptr
			opts := &slog.HandlerOptions{ReplaceAttr: noClock}
			newHandler := func(w io.Writer) slog.Handler {
				if format == "json" {
					return slog.NewJSONHandler(w, opts)
				}
				return slog.NewTextHandler(w, opts)
			}
			ref := slog.New(newHandler(&want))
			s := New(nil, slog.New(pcHandler{newHandler(&got), &pcs}))
			s.AccessLog = access
			s.logCall(ctx, method, id, time.Now(), nil)
			s.logCall(ctx, method, id, time.Now(), failed)
			if access {
				ref.LogAttrs(ctx, slog.LevelInfo, "rpc", slog.String("method", method), slog.String("request_id", id),
					callerAttr(ctx), codeOK, slog.Duration("duration", 0))
			}
			ref.LogAttrs(ctx, slog.LevelInfo, "rpc", slog.String("method", method), slog.String("request_id", id),
				callerAttr(ctx), slog.String("code", "NotFound"), slog.Duration("duration", 0), slog.String("error", "no such token"))
			if got.String() != want.String() {
				t.Errorf("%s, access %v:\n%s\nwant\n%s", format, access, got.String(), want.String())
			}
			for _, pc := range pcs {
				if pc != 0 {
					t.Errorf("%s: the record has a pc: the stack was walked for it", format)
				}
			}
		}
	}
}
