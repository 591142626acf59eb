package sqlshared

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// Every idempotency statement stands alone, outside any transaction, and
// is the same on both databases.

// ClaimIdempotencyKey implements driver.Idempotency.
func (Statements) ClaimIdempotencyKey(ctx context.Context, e driver.Executor, c driver.IdempotencyClaim) (bool, error) {
	res, err := e.ExecContext(ctx, `INSERT INTO idempotency_keys (org_id, key, request_hash, status, created_at, lease_until, claim_token)
			VALUES ($1, $2, $3, 'in_progress', $4, $5, $6) ON CONFLICT (org_id, key) DO NOTHING`, c.OrgID, c.Key, c.RequestHash, c.CreatedAt, c.LeaseUntil, c.Token)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// GetIdempotencyKey implements driver.Idempotency.
func (Statements) GetIdempotencyKey(ctx context.Context, e driver.Executor, orgID, key string) (driver.IdempotencyKey, error) {
	var row driver.IdempotencyKey
	err := sqlx.GetContext(ctx, e, &row, `SELECT request_hash, status, response_status, response_headers, response_body, created_at, lease_until, claim_token
			FROM idempotency_keys WHERE org_id = $1 AND key = $2`, orgID, key)
	return row, err
}

// ForgetIdempotencyKey implements driver.Idempotency.
func (Statements) ForgetIdempotencyKey(ctx context.Context, e driver.Executor, orgID, key string, created time.Time) error {
	_, err := e.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND created_at = $3`, orgID, key, created)
	return err
}

// TakeOverIdempotencyClaim implements driver.Idempotency.
func (Statements) TakeOverIdempotencyClaim(ctx context.Context, e driver.Executor, orgID, key, fromToken, toToken string, leaseUntil time.Time) (bool, error) {
	res, err := e.ExecContext(ctx, `UPDATE idempotency_keys SET lease_until = $4, claim_token = $5
			WHERE org_id = $1 AND key = $2 AND status = 'in_progress' AND claim_token = $3`, orgID, key, fromToken, leaseUntil, toToken)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// CompleteIdempotencyClaim implements driver.Idempotency.
func (Statements) CompleteIdempotencyClaim(ctx context.Context, e driver.Executor, orgID, key, token string, r driver.IdempotencyResponse) error {
	_, err := e.ExecContext(ctx, `UPDATE idempotency_keys SET status = 'done', response_status = $3, response_headers = $4, response_body = $5
		WHERE org_id = $1 AND key = $2 AND claim_token = $6`, orgID, key, r.Status, r.Headers, r.Body, token)
	return err
}

// ReleaseIdempotencyClaim implements driver.Idempotency.
func (Statements) ReleaseIdempotencyClaim(ctx context.Context, e driver.Executor, orgID, key, token string) error {
	_, err := e.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND status = 'in_progress' AND claim_token = $3`, orgID, key, token)
	return err
}

// PurgeIdempotencyKeys implements driver.Idempotency.
func (Statements) PurgeIdempotencyKeys(ctx context.Context, e driver.Executor, before time.Time) (int64, error) {
	res, err := e.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, before)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
