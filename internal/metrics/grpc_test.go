package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/internal/metrics"
)

var buckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// fakeStream is a server stream that sends and receives nothing.
type fakeStream struct{ grpc.ServerStream }

func (fakeStream) Context() context.Context { return context.Background() }
func (fakeStream) SendMsg(any) error        { return nil }
func (fakeStream) RecvMsg(any) error        { return nil }

type interceptors struct {
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
}

// drive makes the same calls through a pair of interceptors: unary calls
// that succeed and fail in each way the code is derived, a server stream,
// and a method that was never registered.
func drive(in interceptors) {
	ctx := context.Background()
	call := func(method string, err error) {
		in.unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return nil, err })
	}
	check := "/grpc.health.v1.Health/Check"
	call(check, nil)
	call(check, nil)
	call(check, status.Error(codes.NotFound, "no"))
	call(check, fmt.Errorf("wrapped: %w", status.Error(codes.PermissionDenied, "no")))
	call(check, context.Canceled)
	call(check, context.DeadlineExceeded)
	call(check, errors.New("plain"))
	call("/x.Unknown/Method", nil)
	call("noslash", nil)
	in.stream(nil, fakeStream{}, &grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true},
		func(_ any, ss grpc.ServerStream) error {
			ss.RecvMsg(nil)
			ss.SendMsg(nil)
			ss.SendMsg(nil)
			return status.Error(codes.Unavailable, "gone")
		})
}

// samples renders a registry's grpc_server_* families as sorted lines:
// name, help, type, labels and value (for histograms the sample count and
// the bucket bounds; durations differ between runs).
func samples(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "grpc_server_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			v := ""
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = fmt.Sprint(m.GetCounter().GetValue())
			case dto.MetricType_HISTOGRAM:
				var bounds []string
				for _, b := range m.GetHistogram().GetBucket() {
					bounds = append(bounds, fmt.Sprint(b.GetUpperBound()))
				}
				v = fmt.Sprintf("count=%d buckets=%s", m.GetHistogram().GetSampleCount(), strings.Join(bounds, ","))
			}
			out = append(out, fmt.Sprintf("%s %q %s {%s} %s", f.GetName(), f.GetHelp(), f.GetType(), strings.Join(ls, ","), v))
		}
	}
	slices.Sort(out)
	return out
}

// TestGRPCMetricsMatchTheProvider: the interceptors export exactly what
// go-grpc-middleware's Prometheus provider (which they replace) exported
// for the same calls: names, help, types, labels, values.
func TestGRPCMetricsMatchTheProvider(t *testing.T) {
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())

	old := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(buckets)))
	oldReg := prometheus.NewRegistry()
	oldReg.MustRegister(old)
	old.InitializeMetrics(gs)
	drive(interceptors{old.UnaryServerInterceptor(), old.StreamServerInterceptor()})

	m := metrics.New()
	m.GRPC.InitializeMetrics(gs)
	drive(interceptors{m.GRPC.UnaryServerInterceptor(), m.GRPC.StreamServerInterceptor()})

	want, got := samples(t, oldReg), samples(t, m.Registry)
	if len(want) < 50 {
		t.Fatalf("the provider exported only %d samples", len(want))
	}
	if !slices.Equal(got, want) {
		for _, l := range want {
			if !slices.Contains(got, l) {
				t.Errorf("missing: %s", l)
			}
		}
		for _, l := range got {
			if !slices.Contains(want, l) {
				t.Errorf("extra:   %s", l)
			}
		}
	}
}

// TestHotPathAllocatesNothing: counting a unary call of a registered
// method and observing a batch size allocate nothing (the provider's
// interceptor allocated a reporter and its label slices on every call).
func TestHotPathAllocatesNothing(t *testing.T) {
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	m := metrics.New()
	m.GRPC.InitializeMetrics(gs)
	unary := m.GRPC.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	h := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { unary(ctx, nil, info, h) }); n != 0 {
		t.Errorf("unary interceptor: %v allocations per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.ObserveBatch("Tokenize", 3) }); n != 0 {
		t.Errorf("ObserveBatch: %v allocations per call, want 0", n)
	}
}
