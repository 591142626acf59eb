// Package idempotency stores the outcome of POST requests that carry an
// Idempotency-Key, so that a client retrying after a timeout or a dropped
// connection gets the first answer again instead of a second write.
//
// A key belongs to one organization and lives 24 hours (TTL). The first
// request claims it (status in_progress), runs, and stores its response.
// A retry with the same key and the same request gets that response
// replayed; the same key with a different request is refused; a retry
// while the first is still running is told so. Responses that say "try
// again" (5xx) are not kept: the key is released so the retry really runs.
package idempotency

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/jmoiron/sqlx"
)

// TTL is how long a key and its response are kept.
const TTL = 24 * time.Hour

var (
	// ErrKeyReused: the key was used for a different request.
	ErrKeyReused = errors.New("idempotency key reused with a different request")
	// ErrInProgress: the first request with this key has not finished.
	ErrInProgress = errors.New("a request with this idempotency key is still in progress")
)

// Response is a stored response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Store keeps keys in the database: PostgreSQL, or the SQLite file (DB is
// then its writer). Every statement stands alone, outside any transaction,
// and the same SQL runs on both. Times come from this process's clock,
// never the database's (SQLite has no now()): a key's age is measured with
// the clock that stamped it.
type Store struct{ DB *sqlx.DB }

// Fingerprint identifies a request: method, path and exact body.
func Fingerprint(method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Begin claims key for the request. It returns (nil, nil) when the caller
// owns the key and must run the request and then Complete or Release it,
// a stored response to replay, or ErrKeyReused / ErrInProgress.
func (s *Store) Begin(ctx context.Context, orgID, key, fingerprint string) (*Response, error) {
	for range 3 {
		res, err := s.DB.ExecContext(ctx, `INSERT INTO idempotency_keys (org_id, key, request_hash, status, created_at)
			VALUES ($1, $2, $3, 'in_progress', $4) ON CONFLICT (org_id, key) DO NOTHING`, orgID, key, fingerprint, time.Now().UTC())
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, nil
		}
		var row struct {
			Hash    string        `db:"request_hash"`
			Status  string        `db:"status"`
			Code    sql.NullInt64 `db:"response_status"`
			Headers []byte        `db:"response_headers"`
			Body    []byte        `db:"response_body"`
			Created time.Time     `db:"created_at"`
		}
		err = s.DB.GetContext(ctx, &row, `SELECT request_hash, status, response_status, response_headers, response_body, created_at
			FROM idempotency_keys WHERE org_id = $1 AND key = $2`, orgID, key)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released meanwhile: claim it
		}
		if err != nil {
			return nil, err
		}
		if time.Since(row.Created) > TTL {
			// Expired: forget it and claim afresh.
			if _, err := s.DB.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND created_at = $3`, orgID, key, row.Created); err != nil {
				return nil, err
			}
			continue
		}
		if row.Hash != fingerprint {
			return nil, ErrKeyReused
		}
		if row.Status != "done" {
			return nil, ErrInProgress
		}
		out := &Response{Status: int(row.Code.Int64), Header: http.Header{}, Body: row.Body}
		if len(row.Headers) > 0 {
			if err := json.Unmarshal(row.Headers, &out.Header); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, ErrInProgress
}

// Complete stores the response of a claimed key.
func (s *Store) Complete(ctx context.Context, orgID, key string, r Response) error {
	h, err := json.Marshal(r.Header)
	if err != nil {
		return err
	}
	_, err = s.DB.ExecContext(ctx, `UPDATE idempotency_keys SET status = 'done', response_status = $3, response_headers = $4, response_body = $5
		WHERE org_id = $1 AND key = $2`, orgID, key, r.Status, string(h), r.Body)
	return err
}

// Release forgets a claimed key (the request failed in a way worth retrying).
func (s *Store) Release(ctx context.Context, orgID, key string) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND status = 'in_progress'`, orgID, key)
	return err
}

// Purge deletes expired keys; the server runs it periodically.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	res, err := s.DB.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, time.Now().UTC().Add(-TTL))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
