// Package errinfo names the machine-readable causes of tokenvault's errors:
// the google.rpc.ErrorInfo detail the server attaches to an error status
// carries [Domain] and one of the reasons below. The server's error table
// (internal/grpcserver/status.go) and the Go client's typed errors
// (client/errors.go) both use these constants, so a reason is spelled in
// one place. Other languages read the same strings from the ErrorInfo
// detail.
//
// A reason is more specific than the gRPC code it comes with
// (SUBJECT_ERASED is a FAILED_PRECONDITION, RATE_LIMITED a
// RESOURCE_EXHAUSTED); callers branch on it where the code is not enough.
package errinfo

// Domain is the ErrorInfo domain of every tokenvault error.
const Domain = "tokenvault"

// Reasons, each with the gRPC code it is sent with.
const (
	// InvalidArgument (INVALID_ARGUMENT): a request field is malformed or
	// out of limits, or a reveal has no purpose. A BadRequest detail names
	// the field.
	InvalidArgument = "INVALID_ARGUMENT"
	// NotFound (NOT_FOUND): unknown token, subject or blob key; an expired
	// token.
	NotFound = "NOT_FOUND"
	// SubjectErased (FAILED_PRECONDITION): the data belonged to a subject
	// that has been erased.
	SubjectErased = "SUBJECT_ERASED"
	// HeldAfterErasure (FAILED_PRECONDITION): the value is under a legal
	// hold after its subject's erasure and the reveal's purpose is not one
	// of the hold class's; the message names the purpose and the class.
	HeldAfterErasure = "HELD_AFTER_ERASURE"
	// FailedPrecondition (FAILED_PRECONDITION): not allowed in the current
	// state (a restricted subject, a KEK version still in use), or a
	// feature this vault is not configured for (receipt or backup signing,
	// the erasure ledger).
	FailedPrecondition = "FAILED_PRECONDITION"
	// ConsentRequired (FAILED_PRECONDITION): the reveal's purpose rests on
	// consent (the policy's purposes) and the subject has not consented
	// to it, or withdrew consent; the message names the purpose.
	ConsentRequired = "CONSENT_REQUIRED"
	// TokenSpaceExhausted (RESOURCE_EXHAUSTED): no free token is left for
	// the value.
	TokenSpaceExhausted = "TOKEN_SPACE_EXHAUSTED"
	// StorageFull (RESOURCE_EXHAUSTED): the server's disk is full, so it
	// refuses writes (tokenize, erase, …) until space is freed; reveals
	// still work. Retrying later is safe: nothing was written.
	StorageFull = "STORAGE_FULL"
	// RateLimited (RESOURCE_EXHAUSTED): the caller's identity is over a
	// per-identity limit; the message says when to retry.
	RateLimited = "RATE_LIMITED"
	// VolatileCapacityExhausted (RESOURCE_EXHAUSTED): the server process
	// holds its maximum of volatile tokens (card security codes; config
	// volatile.max_tokens). Nothing was stored; retry later.
	VolatileCapacityExhausted = "VOLATILE_CAPACITY_EXHAUSTED"
	// VolatileHolderUnavailable (UNAVAILABLE): the volatile token (a
	// card security code) is held by another replica that cannot be
	// asked: not among the replicas this one knows (config
	// volatile.peers), unreachable, or refusing the forward. Nothing was
	// revealed; a retry may reach the holder once it is back (a holder
	// that restarted answers NOT_FOUND: a restart drops its codes).
	VolatileHolderUnavailable = "VOLATILE_HOLDER_UNAVAILABLE"
	// Unauthenticated (UNAUTHENTICATED): no identity, or one that could not
	// be verified. Authentication is decided before the request is read
	// (the guard's tap handle); the refusal carries its ErrorInfo all the
	// same.
	Unauthenticated = "UNAUTHENTICATED"
	// PermissionDenied (PERMISSION_DENIED): the identity may not do this
	// (operation, kind, context or purpose), or the method is unknown (an
	// unknown method, like authentication, is refused before the request
	// is read).
	PermissionDenied = "PERMISSION_DENIED"
	// KEKUnavailable (UNAVAILABLE): the key-encryption key provider is
	// unreachable; retry later.
	KEKUnavailable = "KEK_UNAVAILABLE"
	// AuditUnavailable (UNAVAILABLE): the audit log cannot be written, so
	// the call was refused or its result withheld.
	AuditUnavailable = "AUDIT_UNAVAILABLE"
	// StoreUnavailable (UNAVAILABLE): the store's database cannot be
	// reached (down, or failing over to a standby); retry later. A write
	// cut short may or may not have been committed.
	StoreUnavailable = "STORE_UNAVAILABLE"
	// Unimplemented (UNIMPLEMENTED): this server does not offer the call
	// (backups on a store without them).
	Unimplemented = "UNIMPLEMENTED"
	// DeadlineExceeded (DEADLINE_EXCEEDED) and Canceled (CANCELED): the
	// call's context ended.
	DeadlineExceeded = "DEADLINE_EXCEEDED"
	Canceled         = "CANCELED"
	// Internal (INTERNAL): a server fault; the message carries only a
	// reference to the server log.
	Internal = "INTERNAL"
)
