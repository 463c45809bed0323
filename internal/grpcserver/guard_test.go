package grpcserver

import (
	"testing"

	"google.golang.org/grpc"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestEveryMethodHasAnOperation: an RPC missing from the guard's table is
// refused under any policy; this test makes a new RPC without a table
// entry fail here rather than in production.
func TestEveryMethodHasAnOperation(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{pb.TokenVault_ServiceDesc, pb.KeyAdmin_ServiceDesc, pb.BackupAdmin_ServiceDesc, pb.ReplicaPeer_ServiceDesc} {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			full := "/" + sd.ServiceName + "/" + n
			if public(full) {
				continue
			}
			spec, ok := methods[full]
			if !ok || !spec.op.Valid() {
				t.Errorf("%s has no operation in the guard's methods table (guard.go)", full)
			}
			if spec.op.Reveal() && spec.audit != auditAlways {
				t.Errorf("%s reveals values but is not always audited", full)
			}
		}
	}
}
