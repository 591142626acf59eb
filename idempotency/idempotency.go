// Package idempotency stores the outcome of POST requests that carry an
// Idempotency-Key, so that a client retrying after a timeout or a dropped
// connection gets the first answer again instead of a second write.
//
// A key belongs to one organization and lives 24 hours (TTL). The first
// request claims it (status in_progress), runs, and stores its response.
// A retry with the same key and the same request gets that response
// replayed; the same key with a different request is refused; a retry
// while the first is still running is told so, until the first attempt's
// lease runs out; then the retry takes the request over. Responses that say
// "try again" (5xx) are not kept: the key is released so the retry really
// runs (and if that release fails, the lease frees the key).
package idempotency

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// TTL is how long a key and its response are kept.
const TTL = 24 * time.Hour

// DefaultLease is how long a claim holds an in-progress key when the store
// sets no Lease: on the order of the request timeout, so that a retry of a
// request whose process died waits about as long as a slow request runs.
const DefaultLease = 60 * time.Second

var (
	// ErrKeyReused: the key was used for a different request.
	ErrKeyReused = errors.New("idempotency key reused with a different request")
	// ErrInProgress: the first request with this key has not finished
	// (and its lease has not run out). The concrete error is an
	// *InProgressError saying when the lease ends.
	ErrInProgress = errors.New("a request with this idempotency key is still in progress")
)

// InProgressError is ErrInProgress with the time left on the lease.
type InProgressError struct{ RetryAfter time.Duration }

func (e *InProgressError) Error() string { return ErrInProgress.Error() }

// Is makes errors.Is(err, ErrInProgress) work.
func (e *InProgressError) Is(target error) bool { return target == ErrInProgress }

// Response is a stored response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Store keeps keys in the database through Driver: PostgreSQL, or the
// SQLite file (DB is then its writer). Every statement stands alone,
// outside any transaction. Times come from this process's clock, never the
// database's (SQLite has no now()): a key's age is measured with the clock
// that stamped it.
//
// A claim is leased: a request that never completes (its process was
// killed, or storing its response failed) holds its key for Lease, not for
// the key's whole TTL. A retry after that takes the request over (Claim
// says so with TakeOver); the request handlers then find out whether the
// first attempt's writes committed before writing anything (see
// commands.Idempotency).
type Store struct {
	DB     *sqlx.DB
	Driver driver.Driver
	// Lease is how long a claim holds an in-progress key. Default
	// DefaultLease.
	Lease time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (s *Store) lease() time.Duration { return cmp.Or(max(s.Lease, 0), DefaultLease) }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Claim is the outcome of claiming a key.
type Claim struct {
	OrgID, Key string
	// Replay, when set, is the stored response to send again; the caller
	// owns nothing.
	Replay *Response
	// Token identifies this claim; Complete and Release of a claim that was
	// taken over since do nothing.
	Token string
	// TakeOver: an earlier attempt with this key and request claimed it and
	// never finished within its lease. Its writes may have committed.
	TakeOver bool
}

// Fingerprint identifies a request: method, path and exact body.
func Fingerprint(method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Claim claims key for the request. It returns a claim the caller owns (it
// must run the request and then CompleteClaim or ReleaseClaim it), a claim
// with a stored response to replay, or ErrKeyReused / ErrInProgress.
func (s *Store) Claim(ctx context.Context, orgID, key, fingerprint string) (Claim, error) {
	c := Claim{OrgID: orgID, Key: key}
	for range 5 {
		now := s.now()
		token := uuid.NewString()
		claimed, err := s.Driver.ClaimIdempotencyKey(ctx, s.DB, driver.IdempotencyClaim{
			OrgID: orgID, Key: key, RequestHash: fingerprint, CreatedAt: now, LeaseUntil: now.Add(s.lease()), Token: token,
		})
		if err != nil {
			return c, err
		}
		if claimed {
			c.Token = token
			return c, nil
		}
		row, err := s.Driver.GetIdempotencyKey(ctx, s.DB, orgID, key)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released meanwhile: claim it
		}
		if err != nil {
			return c, err
		}
		if now.Sub(row.CreatedAt) > TTL {
			// Expired: forget it and claim afresh.
			if err := s.Driver.ForgetIdempotencyKey(ctx, s.DB, orgID, key, row.CreatedAt); err != nil {
				return c, err
			}
			continue
		}
		if row.RequestHash != fingerprint {
			return c, ErrKeyReused
		}
		if row.Status == "done" {
			out := &Response{Status: int(row.Code.Int64), Header: http.Header{}, Body: row.Body}
			if len(row.Headers) > 0 {
				if err := json.Unmarshal(row.Headers, &out.Header); err != nil {
					return c, err
				}
			}
			c.Replay = out
			return c, nil
		}
		leaseEnd := row.CreatedAt.Add(s.lease()) // claimed before leases existed
		if row.LeaseUntil.Valid {
			leaseEnd = row.LeaseUntil.Time
		}
		if now.Before(leaseEnd) {
			return c, &InProgressError{RetryAfter: leaseEnd.Sub(now)}
		}
		// The lease ran out: take the claim over, unless another retry
		// just did (the token changed).
		taken, err := s.Driver.TakeOverIdempotencyClaim(ctx, s.DB, orgID, key, row.Token, token, now.Add(s.lease()))
		if err != nil {
			return c, err
		}
		if taken {
			c.Token, c.TakeOver = token, true
			return c, nil
		}
	}
	return c, &InProgressError{RetryAfter: time.Second}
}

// CompleteClaim stores the response of a claim the caller still owns; a
// claim taken over since (its lease ran out) is left to its new owner.
func (s *Store) CompleteClaim(ctx context.Context, c Claim, r Response) error {
	h, err := json.Marshal(r.Header)
	if err != nil {
		return err
	}
	return s.Driver.CompleteIdempotencyClaim(ctx, s.DB, c.OrgID, c.Key, c.Token, driver.IdempotencyResponse{
		Status: r.Status, Headers: string(h), Body: r.Body,
	})
}

// ReleaseClaim forgets a claim the caller still owns (the request failed in
// a way worth retrying).
func (s *Store) ReleaseClaim(ctx context.Context, c Claim) error {
	return s.Driver.ReleaseIdempotencyClaim(ctx, s.DB, c.OrgID, c.Key, c.Token)
}

// Purge deletes expired keys; the server runs it periodically.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	return s.Driver.PurgeIdempotencyKeys(ctx, s.DB, s.now().Add(-TTL))
}
