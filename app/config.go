package app

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/salesos/salesos/idempotency"
	"github.com/salesos/salesos/webhooks"
)

// Config is the runtime configuration, read from SALESOS_* environment
// variables (see the README's configuration table).
type Config struct {
	Addr          string // SALESOS_ADDR, default "localhost:8080" in development (loopback only), ":8080" otherwise
	DataDir       string // SALESOS_DATA_DIR, default "./data"
	DatabaseURL   string // SALESOS_DATABASE_URL: postgres://… or sqlite://path, default sqlite://<DataDir>/salesos.db
	EventStoreURL string // SALESOS_EVENTSTORE_URL, default DatabaseURL
	Env           string // SALESOS_ENV: development | staging | production

	OIDCIssuer   string // SALESOS_OIDC_ISSUER; empty → built-in development issuer
	OIDCAudience string // SALESOS_OIDC_AUDIENCE
	TenantClaim  string // SALESOS_TENANT_CLAIM, default "org_id"
	PlanClaim    string // SALESOS_PLAN_CLAIM, default "plan"

	ConsistencyWait time.Duration // SALESOS_CONSISTENCY_WAIT, default 5s

	WebhookRetrySchedule   []time.Duration // SALESOS_WEBHOOK_RETRY_SCHEDULE, default 1m,5m,30m,2h,12h
	WebhookDeactivateAfter int             // SALESOS_WEBHOOK_DEACTIVATE_AFTER, default 10
	WebhookAllowPrivate    bool            // SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS, default false
	WebhookTimeout         time.Duration   // SALESOS_WEBHOOK_TIMEOUT, default 10s
	WebhookConcurrency     int             // SALESOS_WEBHOOK_CONCURRENCY, default 64
	WebhookPerEndpoint     int             // SALESOS_WEBHOOK_ENDPOINT_CONCURRENCY, default 8
	WebhookLease           time.Duration   // SALESOS_WEBHOOK_LEASE, default 10s, renewed while an attempt runs
	IdempotencyLease       time.Duration   // SALESOS_IDEMPOTENCY_LEASE, default 60s
	AutoMigrate            bool            // SALESOS_AUTO_MIGRATE, default true
	ShutdownTimeout        time.Duration   // SALESOS_SHUTDOWN_TIMEOUT, default 20s
	LogLevel               string          // SALESOS_LOG_LEVEL: debug | info | warn | error

	// RateLimits are requests per minute per organization, by plan
	// (SALESOS_RATE_LIMITS="starter=100,professional=500,enterprise=2000").
	RateLimits map[string]int
	RedisURL   string // SALESOS_REDIS_URL: share rate-limit budgets between instances

	DBMaxConns int // SALESOS_DB_MAX_CONNS: database connections per instance, default 40
}

// DefaultRateLimits are the plans' published limits (requests per minute).
var DefaultRateLimits = map[string]int{"starter": 100, "professional": 500, "enterprise": 2000}

// DevAudience is the audience of the built-in development issuer's tokens
// when SALESOS_OIDC_AUDIENCE is not set.
const DevAudience = "salesos-dev"

// ConfigFromEnv reads the configuration; Validate reports every problem.
func ConfigFromEnv() (Config, error) {
	c := Config{
		Addr:          os.Getenv("SALESOS_ADDR"),
		DataDir:       envOr("SALESOS_DATA_DIR", "./data"),
		DatabaseURL:   os.Getenv("SALESOS_DATABASE_URL"),
		EventStoreURL: os.Getenv("SALESOS_EVENTSTORE_URL"),
		Env:           envOr("SALESOS_ENV", "development"),
		OIDCIssuer:    os.Getenv("SALESOS_OIDC_ISSUER"),
		OIDCAudience:  os.Getenv("SALESOS_OIDC_AUDIENCE"),
		TenantClaim:   envOr("SALESOS_TENANT_CLAIM", "org_id"),
		PlanClaim:     envOr("SALESOS_PLAN_CLAIM", "plan"),
		LogLevel:      envOr("SALESOS_LOG_LEVEL", "info"),
		RedisURL:      os.Getenv("SALESOS_REDIS_URL"),
	}
	if c.Addr == "" {
		c.Addr = defaultAddr(c.Env)
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = defaultDatabaseURL(c.DataDir)
	}
	var errs []error
	var err error
	if c.ConsistencyWait, err = envDuration("SALESOS_CONSISTENCY_WAIT", 5*time.Second); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout, err = envDuration("SALESOS_SHUTDOWN_TIMEOUT", 20*time.Second); err != nil {
		errs = append(errs, err)
	}
	if c.IdempotencyLease, err = envDuration("SALESOS_IDEMPOTENCY_LEASE", idempotency.DefaultLease); err != nil {
		errs = append(errs, err)
	}
	if c.AutoMigrate, err = envBool("SALESOS_AUTO_MIGRATE", true); err != nil {
		errs = append(errs, err)
	}
	if c.RateLimits, err = envRateLimits("SALESOS_RATE_LIMITS"); err != nil {
		errs = append(errs, err)
	}
	if c.DBMaxConns, err = envInt("SALESOS_DB_MAX_CONNS", 40); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookRetrySchedule, err = envDurations("SALESOS_WEBHOOK_RETRY_SCHEDULE", webhooks.DefaultSchedule); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookDeactivateAfter, err = envInt("SALESOS_WEBHOOK_DEACTIVATE_AFTER", 10); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookAllowPrivate, err = envBool("SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS", false); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookTimeout, err = envDuration("SALESOS_WEBHOOK_TIMEOUT", 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookConcurrency, err = envInt("SALESOS_WEBHOOK_CONCURRENCY", webhooks.DefaultConcurrency); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookPerEndpoint, err = envInt("SALESOS_WEBHOOK_ENDPOINT_CONCURRENCY", webhooks.DefaultPerEndpoint); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookLease, err = envDuration("SALESOS_WEBHOOK_LEASE", webhooks.DefaultLease); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

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

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, fmt.Errorf("%s: %q is not a Go duration such as 5s or 250ms", k, v)
	}
	return d, nil
}

func envInt(k string, def int) (int, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return def, fmt.Errorf("%s: %q is not a positive whole number", k, v)
	}
	return n, nil
}

// envRateLimits reads "plan=N,plan=N"; plans not named keep their default.
func envRateLimits(k string) (map[string]int, error) {
	out := map[string]int{}
	for p, n := range DefaultRateLimits {
		out[p] = n
	}
	v := os.Getenv(k)
	if v == "" {
		return out, nil
	}
	for _, part := range strings.Split(v, ",") {
		plan, num, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(num)
		if _, known := DefaultRateLimits[plan]; !ok || !known || err != nil || n <= 0 {
			return out, fmt.Errorf("%s: %q is not a list such as starter=100,professional=500,enterprise=2000", k, v)
		}
		out[plan] = n
	}
	return out, nil
}

// envDurations reads a comma-separated list such as "1m,5m,30m,2h,12h".
func envDurations(k string, def []time.Duration) ([]time.Duration, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	var out []time.Duration
	for _, part := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return def, fmt.Errorf("%s: %q is not a comma-separated list of positive Go durations such as 1m,5m,30m,2h,12h", k, v)
		}
		out = append(out, d)
	}
	return out, nil
}

func envBool(k string, def bool) (bool, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, fmt.Errorf("%s: %q is not true or false", k, v)
	}
	return b, nil
}
