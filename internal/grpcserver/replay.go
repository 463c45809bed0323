package grpcserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Streams as the guard hands them to handlers.

// replayStream hands the request the guard already read (to decide on its
// purpose and subject) to the handler, which reads it again.
type replayStream struct {
	grpc.ServerStream
	req  proto.Message
	done bool
	fail func(error) error // the error's status
}

func (s *replayStream) RecvMsg(m any) error {
	if s.done {
		return s.ServerStream.RecvMsg(m)
	}
	s.done = true
	dst, ok := m.(proto.Message)
	if !ok {
		// The generated code always passes its request type.
		return s.fail(fmt.Errorf("replaying the request: a %T is not a protobuf message", m))
	}
	proto.Merge(dst, s.req)
	return nil
}

// guardedStream carries the context the guard made (identity, access,
// the call's audit record) to the handler.
type guardedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *guardedStream) Context() context.Context { return s.ctx }
