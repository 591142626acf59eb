package app

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the runtime configuration. ConfigFromEnv fills it from the
// SALESOS_* variables of the settings table (settings.go), which also holds
// each one's default and meaning; the comments here only name the variable.
type Config struct {
	Addr          string // SALESOS_ADDR
	DataDir       string // SALESOS_DATA_DIR
	DatabaseURL   string // SALESOS_DATABASE_URL: postgres://… or sqlite://path
	EventStoreURL string // SALESOS_EVENTSTORE_URL; empty → the database
	Env           string // SALESOS_ENV: development | staging | production

	OIDCIssuer   string // SALESOS_OIDC_ISSUER; empty → built-in development issuer
	OIDCAudience string // SALESOS_OIDC_AUDIENCE
	TenantClaim  string // SALESOS_TENANT_CLAIM
	PlanClaim    string // SALESOS_PLAN_CLAIM

	ConsistencyWait time.Duration // SALESOS_CONSISTENCY_WAIT

	WebhookRetrySchedule   []time.Duration // SALESOS_WEBHOOK_RETRY_SCHEDULE
	WebhookDeactivateAfter int             // SALESOS_WEBHOOK_DEACTIVATE_AFTER
	WebhookAllowPrivate    bool            // SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS
	WebhookTimeout         time.Duration   // SALESOS_WEBHOOK_TIMEOUT
	WebhookConcurrency     int             // SALESOS_WEBHOOK_CONCURRENCY
	WebhookPerEndpoint     int             // SALESOS_WEBHOOK_ENDPOINT_CONCURRENCY
	WebhookLease           time.Duration   // SALESOS_WEBHOOK_LEASE, renewed while an attempt runs
	IdempotencyLease       time.Duration   // SALESOS_IDEMPOTENCY_LEASE
	AutoMigrate            bool            // SALESOS_AUTO_MIGRATE
	ShutdownTimeout        time.Duration   // SALESOS_SHUTDOWN_TIMEOUT
	LogLevel               string          // SALESOS_LOG_LEVEL: debug | info | warn | error

	// RateLimits are requests per minute per organization, by plan
	// (SALESOS_RATE_LIMITS, "plan=N,…").
	RateLimits map[string]int
	RedisURL   string // SALESOS_REDIS_URL: share rate-limit budgets between instances

	DBMaxConns int // SALESOS_DB_MAX_CONNS: database connections per instance
}

// DefaultRateLimits are the plans' published limits (requests per minute).
var DefaultRateLimits = map[string]int{"starter": 100, "professional": 500, "enterprise": 2000}

// DevAudience is the audience of the built-in development issuer's tokens
// when SALESOS_OIDC_AUDIENCE is not set.
const DevAudience = "salesos-dev"

// Validate joins every configuration problem into one error.
func (c Config) Validate() error {
	var errs []error
	switch c.Env {
	case "development", "staging", "production":
	default:
		errs = append(errs, fmt.Errorf("SALESOS_ENV must be development, staging or production, not %q", c.Env))
	}
	if c.OIDCIssuer == "" && (c.Env == "production" || c.Env == "staging") {
		errs = append(errs, fmt.Errorf("SALESOS_ENV=%s needs SALESOS_OIDC_ISSUER and SALESOS_OIDC_AUDIENCE: the built-in development issuer runs only in development", c.Env))
	}
	if c.WebhookAllowPrivate && c.Env == "production" {
		errs = append(errs, errors.New("SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS=true is refused in production: it would let any customer make this server call its internal network"))
	}
	if c.OIDCIssuer != "" && c.OIDCAudience == "" {
		errs = append(errs, errors.New("SALESOS_OIDC_ISSUER is set but SALESOS_OIDC_AUDIENCE is not"))
	}
	switch {
	case c.DatabaseURL == "":
		errs = append(errs, errors.New("no database: set SALESOS_DATABASE_URL (postgres://… or sqlite://path) or SALESOS_DATA_DIR"))
	case !isPostgresURL(c.DatabaseURL) && !isSQLiteURL(c.DatabaseURL):
		errs = append(errs, errors.New("SALESOS_DATABASE_URL: use postgres://user@host:5432/db or sqlite://path/to/salesos.db"))
	}
	switch {
	case c.EventStoreURL == "", isESDBURL(c.EventStoreURL):
	case isPostgresURL(c.EventStoreURL), isSQLiteURL(c.EventStoreURL):
		if c.EventStoreURL != c.DatabaseURL {
			errs = append(errs, errors.New("SALESOS_EVENTSTORE_URL: an event store in PostgreSQL or SQLite must be the database of SALESOS_DATABASE_URL (projections commit their checkpoints next to the read model); leave it unset"))
		}
	default:
		errs = append(errs, errors.New("SALESOS_EVENTSTORE_URL: use esdb://host:2113 (EventStoreDB), or leave it unset to keep events in the database"))
	}
	if c.ConsistencyWait < 0 || c.ShutdownTimeout < 0 || c.WebhookTimeout < 0 || c.WebhookLease < 0 || c.IdempotencyLease < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.WebhookDeactivateAfter < 0 || c.WebhookConcurrency < 0 {
		errs = append(errs, errors.New("SALESOS_WEBHOOK_DEACTIVATE_AFTER and SALESOS_WEBHOOK_CONCURRENCY must be positive"))
	}
	if c.WebhookLease > 0 && c.WebhookLease < time.Second {
		// Leases are renewed every third of their length: below a second
		// a renewal that waits on a busy database lets them run out and
		// cuts attempts short.
		errs = append(errs, fmt.Errorf("SALESOS_WEBHOOK_LEASE (%s) must be at least 1s", c.WebhookLease))
	}
	if c.WebhookPerEndpoint > 0 && c.WebhookConcurrency > 0 && c.WebhookPerEndpoint > c.WebhookConcurrency {
		errs = append(errs, fmt.Errorf("SALESOS_WEBHOOK_ENDPOINT_CONCURRENCY (%d) cannot exceed SALESOS_WEBHOOK_CONCURRENCY (%d)", c.WebhookPerEndpoint, c.WebhookConcurrency))
	}
	if isPostgresURL(c.DatabaseURL) && c.DBMaxConns > 0 && c.DBMaxConns < MinDBConns {
		errs = append(errs, fmt.Errorf("SALESOS_DB_MAX_CONNS=%d is too few: the workers keep %d connections to themselves (event-store wake-ups, one leader lock per projection) and need %d more to make progress; use at least %d", c.DBMaxConns, pinnedDBConns, MinDBConns-pinnedDBConns, MinDBConns))
	}
	return errors.Join(errs...)
}

// On PostgreSQL some connections never return to the pool while the
// server runs: the event store's LISTEN connection and the advisory-lock
// connection of each of the three projections. On top of those, the
// group-commit writer, a projection batch, the webhook dispatcher and at
// least one request must be able to get a connection at the same time, or
// the service stalls with every worker waiting on the pool.
const (
	pinnedDBConns = 1 + 3
	// MinDBConns is the smallest SALESOS_DB_MAX_CONNS accepted.
	MinDBConns = pinnedDBConns + 4
)

// defaultAddr keeps a development server on the loopback interface: its
// built-in token issuer signs tokens for anyone who can run dev-token
// against its data directory, so it must not be reachable from the network
// unless the operator says so with SALESOS_ADDR.
func defaultAddr(env string) string {
	if env == "development" {
		return "localhost:8080"
	}
	return ":8080"
}

// Audience is the audience tokens must carry.
func (c Config) Audience() string {
	if c.OIDCAudience == "" && c.OIDCIssuer == "" {
		return DevAudience
	}
	return c.OIDCAudience
}

func isESDBURL(u string) bool {
	return strings.HasPrefix(u, "esdb://") || strings.HasPrefix(u, "esdb+discover://")
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}
