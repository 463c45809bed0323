package grpcserver

import (
	"context"
	"crypto/x509"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// In-process callers: the privacy console (internal/console) serves people
// in a browser, not gRPC clients, but it must not become a second way in.
// So it identifies its users with the guard's own rule (Identify) and runs
// every operation through the guard's own admission and audit (Call): the
// same policy decision, purpose check, per-item filters, refusal audit and
// audit entry as the gRPC call of that method, under the console user's
// identity.

// Identify is the guard's authentication of a verified client certificate
// (nil: none) or an API key ("": none); as for gRPC, not both, and without
// either only in dev mode (anonymous). Errors wrap auth.ErrUnauthenticated
// and never contain the key.
func (g *Guard) Identify(cert *x509.Certificate, apiKey string) (auth.Identity, error) {
	return g.identify(cert, apiKey, apiKey != "")
}

// Call runs h as the gRPC method (its full name, e.g.
// pb.TokenVault_Detokenize_FullMethodName) called by id from addr with
// req: admitted (and refusals audited) exactly as that call, h given the
// context a handler gets, and the audit entry written from what h
// recorded. h should call the method's handler (the Server's or Admin's
// method of that name), so that it records what the vault did. A method
// the guard does not know is refused. The error is nil or a gRPC status
// from the one table (status.go), h's errors included.
func (g *Guard) Call(ctx context.Context, id auth.Identity, addr net.Addr, method string, req any, h func(context.Context) error) error {
	return g.call(ctx, id, addr, method, "", req, h)
}

// CallAudited is Call, and its audit entry is written whatever the
// method's audit mode, naming subject: for what the console does beyond
// the method itself. Its subject page lists a subject's tokens as a Mask
// call, which over gRPC needs the tokens and is audited only when one is
// refused; from a subject id alone it tells what the vault holds of whom,
// so each listing is on record.
func (g *Guard) CallAudited(ctx context.Context, id auth.Identity, addr net.Addr, method, subject string, req any, h func(context.Context) error) error {
	return g.call(ctx, id, addr, method, subject, req, h)
}

func (g *Guard) call(ctx context.Context, id auth.Identity, addr net.Addr, method, subject string, req any, h func(context.Context) error) error {
	ctx = withIdentity(ctx, id) // as the tap handle does for gRPC calls
	if addr != nil {
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr})
	}
	c := g.begin(ctx, method, req)
	if subject != "" {
		if c.rec == nil { // a method never audited: not one to list with
			return g.toStatus(method, errUnknownMethod)
		}
		c.always = true
		c.rec.subject = subject
		// Also in the entry itself: a refusal (admit) is written from it,
		// and a refused listing belongs on the subject's trail most of all.
		if c.entry.Subject == "" {
			c.entry.Subject = audit.Clip(subject)
		}
	}
	ctx, err := g.admit(ctx, c, req)
	if err != nil {
		return err
	}
	if streaming(method) {
		// Its entry is written before it sends, as for gRPC (started).
		if err := g.started(ctx, c); err != nil {
			return err
		}
	}
	err = h(withRecord(ctx, c.rec))
	if _, isStatus := status.FromError(err); !isStatus {
		// A domain error from h (handlers return statuses already): the
		// one table (status.go) answers it, and the audit entry records
		// its code, as for a handler's.
		err = g.toStatus(method, err)
	}
	if aerr := g.finish(c, err); aerr != nil {
		return aerr
	}
	return err
}

// streaming reports whether method is a streaming RPC of a tokenvault
// service.
func streaming(method string) bool {
	for _, sd := range []grpc.ServiceDesc{pb.TokenVault_ServiceDesc, pb.KeyAdmin_ServiceDesc, pb.BackupAdmin_ServiceDesc} {
		for _, st := range sd.Streams {
			if method == "/"+sd.ServiceName+"/"+st.StreamName {
				return true
			}
		}
	}
	return false
}
