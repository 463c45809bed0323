package metrics

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCMetrics are the standard gRPC server metrics — the names, labels,
// help texts and semantics of go-grpc-middleware's Prometheus provider
// (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_msg_received_total, grpc_server_msg_sent_total,
// grpc_server_handling_seconds), so dashboards built for it keep working —
// with each method's counters looked up once instead of on every call.
//
// Why not the provider itself: it resolves every counter per call with
// WithLabelValues (hashing three or four label values under a lock, five
// times a call) and allocates a reporter per call; that was 5–7% of the
// server's CPU for a tokenize or detokenize of one field (BENCHMARKS.md,
// "CPU per call"). Here a call costs one map lookup by full method name
// and a few atomic adds. TestGRPCMetricsMatchTheProvider checks that both
// export the same samples for the same calls.
type GRPCMetrics struct {
	started, handled, msgRecv, msgSent *prometheus.CounterVec
	handling                           *prometheus.HistogramVec
	// methods maps full method names to their children. It is replaced
	// whole (copy on write) by InitializeMetrics and only read on the
	// call path.
	methods atomic.Pointer[map[string]*methodMetrics]
}

// methodMetrics are one method's children, resolved once.
type methodMetrics struct {
	started, msgRecv, msgSent prometheus.Counter
	// handled holds a child per code, or none (an unregistered method:
	// children appear as codes occur, as with the provider).
	handled  [numCodes]prometheus.Counter
	handling prometheus.Observer
	// For codes without a child.
	vec              *prometheus.CounterVec
	typ, svc, method string
}

// numCodes: the canonical gRPC codes, OK (0) to Unauthenticated (16).
const numCodes = int(codes.Unauthenticated) + 1

// NewGRPCMetrics returns the metrics with the handling-time histogram's
// buckets.
func NewGRPCMetrics(buckets []float64) *GRPCMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	g := &GRPCMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total", Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total", Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		msgRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total", Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		msgSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total", Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "grpc_server_handling_seconds", Buckets: buckets,
			Help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
		}, labels),
	}
	g.methods.Store(&map[string]*methodMetrics{})
	return g
}

// Describe implements prometheus.Collector.
func (g *GRPCMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range []prometheus.Collector{g.started, g.handled, g.msgRecv, g.msgSent, g.handling} {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (g *GRPCMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range []prometheus.Collector{g.started, g.handled, g.msgRecv, g.msgSent, g.handling} {
		c.Collect(ch)
	}
}

// ServiceInfoProvider is what InitializeMetrics reads (a *grpc.Server).
type ServiceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// InitializeMetrics resolves every registered method's children, so that
// a dashboard sees zeroes rather than gaps and calls find them without
// a label lookup. Call it after registering the services.
func (g *GRPCMetrics) InitializeMetrics(s ServiceInfoProvider) {
	next := map[string]*methodMetrics{}
	for k, v := range *g.methods.Load() {
		next[k] = v
	}
	for svc, info := range s.GetServiceInfo() {
		for _, mi := range info.Methods {
			next["/"+svc+"/"+mi.Name] = g.resolve(typeOf(mi.IsClientStream, mi.IsServerStream), svc, mi.Name, true)
		}
	}
	g.methods.Store(&next)
}

func (g *GRPCMetrics) resolve(typ, svc, method string, allCodes bool) *methodMetrics {
	m := &methodMetrics{
		started:  g.started.WithLabelValues(typ, svc, method),
		msgRecv:  g.msgRecv.WithLabelValues(typ, svc, method),
		msgSent:  g.msgSent.WithLabelValues(typ, svc, method),
		handling: g.handling.WithLabelValues(typ, svc, method),
		vec:      g.handled, typ: typ, svc: svc, method: method,
	}
	for c := range numCodes {
		if allCodes {
			m.handled[c] = g.handled.WithLabelValues(typ, svc, method, codes.Code(c).String())
		}
	}
	return m
}

// lookup finds a method's children; a method InitializeMetrics did not
// see (none, in tokenvault: gRPC refuses unregistered methods before the
// interceptors) is resolved now and not kept, so that odd method names
// cannot grow the map.
func (g *GRPCMetrics) lookup(fullMethod, typ string) *methodMetrics {
	if m := (*g.methods.Load())[fullMethod]; m != nil {
		return m
	}
	svc, method := splitMethod(fullMethod)
	return g.resolve(typ, svc, method, false)
}

// splitMethod splits "/package.Service/Method" as the provider does.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.Index(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", "unknown"
}

func typeOf(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}

// codeOf is the code the provider counts: a status's, a context error's
// (Canceled, DeadlineExceeded), else Unknown.
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	s, ok := status.FromError(err)
	if !ok {
		s = status.FromContextError(err)
	}
	return s.Code()
}

func (m *methodMetrics) done(err error, start time.Time) {
	c := codeOf(err)
	if int(c) < numCodes && m.handled[c] != nil {
		m.handled[c].Inc()
	} else {
		m.vec.WithLabelValues(m.typ, m.svc, m.method, c.String()).Inc()
	}
	m.handling.Observe(time.Since(start).Seconds())
}

// UnaryServerInterceptor counts a unary call as the provider does: one
// message received and one sent (even when the call fails), then the
// code and the handling time.
func (g *GRPCMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		m := g.lookup(info.FullMethod, "unary")
		m.started.Inc()
		m.msgRecv.Inc()
		resp, err := h(ctx, req)
		m.msgSent.Inc()
		m.done(err, start)
		return resp, err
	}
}

// StreamServerInterceptor counts a streaming call and its messages.
func (g *GRPCMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		m := g.lookup(info.FullMethod, typeOf(info.IsClientStream, info.IsServerStream))
		m.started.Inc()
		err := h(srv, &countedStream{ServerStream: ss, m: m})
		m.done(err, start)
		return err
	}
}

type countedStream struct {
	grpc.ServerStream
	m *methodMetrics
}

// SendMsg and RecvMsg count every message, failed ones too (as the
// provider does).
func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	s.m.msgSent.Inc()
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	s.m.msgRecv.Inc()
	return err
}
