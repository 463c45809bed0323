package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenvault/tokenvault/internal/audit"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// Admin implements tokenvault.v1.KeyAdmin (KEK rotation epochs).
type Admin struct {
	pb.UnimplementedKeyAdminServer
	mapper
	v         *vault.Vault
	retention time.Duration
	auditLog  AuditRotator // nil: RotateAuditLog is refused
}

// NewAdmin returns the KeyAdmin service. retention is the backup retention
// that bounds KEK retirement.
func NewAdmin(v *vault.Vault, retention time.Duration, log *slog.Logger) *Admin {
	return &Admin{mapper: mapper{orDefault(log)}, v: v, retention: retention}
}

func (a *Admin) GetKekStatus(ctx context.Context, _ *pb.GetKekStatusRequest) (*pb.GetKekStatusResponse, error) {
	st, err := a.v.KEKStatus(ctx)
	if err != nil {
		return nil, a.toStatus("GetKekStatus", err)
	}
	out := &pb.GetKekStatusResponse{CurrentVersion: int32(st.Current), BackupRetention: durationpb.New(a.retention)}
	for _, ver := range st.Versions {
		out.Versions = append(out.Versions, &pb.KekVersion{Version: int32(ver.Version),
			Created: timestamppb.New(ver.Created), SubjectKeys: int64(st.KeysByVersion[ver.Version])})
	}
	return out, nil
}

func (a *Admin) RotateKek(req *pb.RotateKekRequest, stream pb.KeyAdmin_RotateKekServer) error {
	ctx := stream.Context()
	st, err := a.v.KEKStatus(ctx)
	if err != nil {
		return a.toStatus("RotateKek", err)
	}
	total := 0
	for _, n := range st.KeysByVersion {
		total += n
	}
	version := st.Current
	if !req.GetRewrapOnly() {
		if version, err = a.v.RotateKEK(ctx); err != nil {
			return a.toStatus("RotateKek", err)
		}
	}
	msg := func(p vault.RewrapProgress, done bool) *pb.RotateKekResponse {
		return &pb.RotateKekResponse{Version: int32(version), Scanned: int64(p.Scanned),
			Total: int64(max(total, p.Scanned)), Rewrapped: int64(p.Rewrapped), Done: done}
	}
	if err := stream.Send(msg(vault.RewrapProgress{}, false)); err != nil {
		return err
	}
	var sendErr error
	p, err := a.v.RewrapKeys(ctx, func(p vault.RewrapProgress) {
		if sendErr == nil {
			sendErr = stream.Send(msg(p, false))
		}
	})
	if err != nil {
		return a.toStatus("RotateKek", err)
	}
	if sendErr != nil {
		return sendErr
	}
	return stream.Send(msg(p, true))
}

func (a *Admin) RetireKek(ctx context.Context, _ *pb.RetireKekRequest) (*pb.RetireKekResponse, error) {
	res, err := a.v.RetireKEK(ctx, a.retention)
	if err != nil {
		return nil, a.toStatus("RetireKek", err)
	}
	out := &pb.RetireKekResponse{MinVersion: int32(res.MinVersion)}
	for _, r := range res.Retired {
		out.RetiredVersions = append(out.RetiredVersions, int32(r))
	}
	return out, nil
}

// The audit log's rotation on demand (RotateAuditLog).

// AuditRotator rotates the audit log (*audit.Log).
type AuditRotator interface {
	Rotate(ctx context.Context) (string, error)
}

var _ AuditRotator = (*audit.Log)(nil)

// WithAuditLog lets RotateAuditLog rotate l.
func (a *Admin) WithAuditLog(l AuditRotator) *Admin {
	a.auditLog = l
	return a
}

func (a *Admin) RotateAuditLog(ctx context.Context, _ *pb.RotateAuditLogRequest) (*pb.RotateAuditLogResponse, error) {
	if a.auditLog == nil {
		return nil, a.toStatus("RotateAuditLog", fmt.Errorf("%w: no audit log to rotate", errNotConfigured))
	}
	name, err := a.auditLog.Rotate(ctx)
	switch {
	case errors.Is(err, audit.ErrNotRotatable):
		return nil, a.toStatus("RotateAuditLog", fmt.Errorf("%w: the audit log is not a regular file", errNotConfigured))
	case errors.Is(err, audit.ErrUnavailable):
		// The detail (paths, OS errors) is in the server log.
		a.log.Error("audit log rotation failed", "err", err)
		return nil, a.toStatus("RotateAuditLog", fmt.Errorf("%w; the log was not rotated", errAuditUnavailable))
	case err != nil:
		return nil, a.toStatus("RotateAuditLog", err)
	}
	return &pb.RotateAuditLogResponse{RotatedFile: name}, nil
}
