package driver

import (
	"context"
	"database/sql"
	"time"
)

// Idempotency stores idempotency keys, their leases and the responses
// replayed for them (idempotency_keys). What a key's age, lease or status
// means is the caller's (package idempotency); times come from the caller.
type Idempotency interface {
	// ClaimIdempotencyKey inserts an in-progress key; claimed is false
	// when the organization already has that key.
	ClaimIdempotencyKey(ctx context.Context, e Executor, c IdempotencyClaim) (claimed bool, err error)
	// GetIdempotencyKey reads a key; sql.ErrNoRows when there is none.
	GetIdempotencyKey(ctx context.Context, e Executor, orgID, key string) (IdempotencyKey, error)
	// ForgetIdempotencyKey deletes the key if it is still the one created
	// at created.
	ForgetIdempotencyKey(ctx context.Context, e Executor, orgID, key string, created time.Time) error
	// TakeOverIdempotencyClaim moves an in-progress key from the claim
	// fromToken to toToken with a new lease; taken is false when the key
	// is no longer in progress under fromToken.
	TakeOverIdempotencyClaim(ctx context.Context, e Executor, orgID, key, fromToken, toToken string, leaseUntil time.Time) (taken bool, err error)
	// CompleteIdempotencyClaim stores the response of the claim token and
	// marks the key done; nothing happens if token no longer holds it.
	CompleteIdempotencyClaim(ctx context.Context, e Executor, orgID, key, token string, r IdempotencyResponse) error
	// ReleaseIdempotencyClaim deletes the key if it is in progress under
	// token.
	ReleaseIdempotencyClaim(ctx context.Context, e Executor, orgID, key, token string) error
	// PurgeIdempotencyKeys deletes the keys created before before.
	PurgeIdempotencyKeys(ctx context.Context, e Executor, before time.Time) (int64, error)
}

// IdempotencyClaim is a new in-progress key.
type IdempotencyClaim struct {
	OrgID, Key  string
	RequestHash string
	CreatedAt   time.Time
	LeaseUntil  time.Time
	Token       string
}

// IdempotencyKey is a stored key.
type IdempotencyKey struct {
	RequestHash string        `db:"request_hash"`
	Status      string        `db:"status"` // in_progress or done
	Code        sql.NullInt64 `db:"response_status"`
	Headers     []byte        `db:"response_headers"` // JSON
	Body        []byte        `db:"response_body"`
	CreatedAt   time.Time     `db:"created_at"`
	LeaseUntil  sql.NullTime  `db:"lease_until"` // null for keys claimed before leases existed
	Token       string        `db:"claim_token"`
}

// IdempotencyResponse is a response to keep.
type IdempotencyResponse struct {
	Status  int
	Headers string // JSON
	Body    []byte
}
