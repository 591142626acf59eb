package app

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The settings table is the one place a SALESOS_* variable is declared: its
// name, its default, what it means, and how its value is read into Config.
// ConfigFromEnv walks it, and the README's configuration table is rendered
// from it (TestREADMEConfigTable fails when the two drift apart).
//
// To refresh the README after changing the table, run from the repository
// root either of
//
//	go generate ./app                  # rewrites the table in README.md
//	go run ./app/configtable           # prints it, to paste by hand
//
//go:generate go run ./configtable -w ../README.md

// setting is one SALESOS_* variable.
type setting struct {
	env string
	// def is the value used when the variable is unset or empty, written
	// as an operator would write the variable, and read by the same set
	// function: the default cannot be something the variable itself could
	// not say. Empty means no default, or one derived from other settings
	// (see deriveDefaults).
	def string
	// defDoc is the README's default column when it is not simply `def`:
	// a derived default, or one that needs a word of explanation.
	defDoc string
	// meaning is the README's meaning column (markdown).
	meaning string
	// set parses a value and stores it in its Config field. Its error
	// says what is wrong with the value; the variable's name is added.
	set func(c *Config, v string) error
}

// settings is in the README's order.
var settings = []setting{
	{env: "SALESOS_ADDR", set: field(func(c *Config) *string { return &c.Addr }, parseString),
		meaning: "listen address",
		defDoc:  "`localhost:8080` in development (loopback only: the development issuer must not face the network), `:8080` otherwise"},
	{env: "SALESOS_DATA_DIR", def: "./data", set: field(func(c *Config) *string { return &c.DataDir }, parseString),
		meaning: "local files: the SQLite database (when `SALESOS_DATABASE_URL` is unset) and the development issuer's key"},
	{env: "SALESOS_DATABASE_URL", set: field(func(c *Config) *string { return &c.DatabaseURL }, parseString),
		meaning: "`sqlite://path` or `postgres://…`: events (unless EventStoreDB), query tables, webhook state",
		defDoc:  "`sqlite://$SALESOS_DATA_DIR/" + DefaultSQLiteFile + "`"},
	{env: "SALESOS_EVENTSTORE_URL", set: field(func(c *Config) *string { return &c.EventStoreURL }, parseString),
		meaning: "event store: `esdb://host:2113?tls=false` (EventStoreDB, any connection string its client accepts); unset keeps the events in the database",
		defDoc:  "the database"},
	{env: "SALESOS_OIDC_ISSUER", set: field(func(c *Config) *string { return &c.OIDCIssuer }, parseString),
		meaning: "exact issuer, e.g. `https://tenant.auth0.com/`",
		defDoc:  "built-in development issuer"},
	{env: "SALESOS_OIDC_AUDIENCE", set: field(func(c *Config) *string { return &c.OIDCAudience }, parseString),
		meaning: "required audience (Auth0 API identifier)",
		defDoc:  "`" + DevAudience + "` with the development issuer"},
	{env: "SALESOS_TENANT_CLAIM", def: "org_id", set: field(func(c *Config) *string { return &c.TenantClaim }, parseString),
		meaning: "claim holding the organization"},
	{env: "SALESOS_PLAN_CLAIM", def: "plan", set: field(func(c *Config) *string { return &c.PlanClaim }, parseString),
		meaning: "claim holding the plan"},
	{env: "SALESOS_ENV", def: "development", set: field(func(c *Config) *string { return &c.Env }, parseString),
		meaning: "`development`, `staging` or `production` (staging and production refuse to start without an issuer, and production refuses private webhook targets)",
		defDoc:  "`development` (the Docker image: `production`)"},
	{env: "SALESOS_CONSISTENCY_WAIT", def: "5s", set: field(func(c *Config) *time.Duration { return &c.ConsistencyWait }, parseDuration),
		meaning: "longest wait for `X-Consistency-Token`"},
	{env: "SALESOS_AUTO_MIGRATE", def: "true", set: field(func(c *Config) *bool { return &c.AutoMigrate }, parseBool),
		meaning: "apply migrations when `serve` starts"},
	{env: "SALESOS_SHUTDOWN_TIMEOUT", def: "20s", set: field(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, parseDuration),
		meaning: "how long the whole shutdown after SIGTERM may take: requests, webhook attempts, projections"},
	{env: "SALESOS_LOG_LEVEL", def: "info", set: field(func(c *Config) *string { return &c.LogLevel }, parseString),
		meaning: "`debug`, `info`, `warn`, `error` (JSON logs on stderr)"},
	{env: "SALESOS_REDIS_URL", set: field(func(c *Config) *string { return &c.RedisURL }, parseString),
		meaning: "Redis shared by all instances for rate-limit budgets, e.g. `redis://127.0.0.1:6379/0`",
		defDoc:  "unset: per-instance budgets"},
	{env: "SALESOS_RATE_LIMITS", def: "starter=100,professional=500,enterprise=2000", set: field(func(c *Config) *map[string]int { return &c.RateLimits }, parseRateLimits),
		meaning: "requests per minute by plan"},
	{env: "SALESOS_DB_MAX_CONNS", def: "40", set: field(func(c *Config) *int { return &c.DBMaxConns }, parsePositiveInt),
		meaning: fmt.Sprintf("database connections per instance (PostgreSQL; at least %d: four are held by the workers for good)", MinDBConns)},
	{env: "SALESOS_WEBHOOK_RETRY_SCHEDULE", def: "1m,5m,30m,2h,12h", set: field(func(c *Config) *[]time.Duration { return &c.WebhookRetrySchedule }, parseDurations),
		meaning: "comma-separated waits before each retry"},
	{env: "SALESOS_WEBHOOK_DEACTIVATE_AFTER", def: "10", set: field(func(c *Config) *int { return &c.WebhookDeactivateAfter }, parsePositiveInt),
		meaning: "consecutive failed attempts before a webhook is switched off"},
	{env: "SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS", def: "false", set: field(func(c *Config) *bool { return &c.WebhookAllowPrivate }, parseBool),
		meaning: "allow loopback and private webhook URLs (development)"},
	{env: "SALESOS_WEBHOOK_TIMEOUT", def: "10s", set: field(func(c *Config) *time.Duration { return &c.WebhookTimeout }, parseDuration),
		meaning: "time limit of one delivery attempt"},
	{env: "SALESOS_WEBHOOK_CONCURRENCY", def: "64", set: field(func(c *Config) *int { return &c.WebhookConcurrency }, parsePositiveInt),
		meaning: "attempts in flight per instance"},
	{env: "SALESOS_WEBHOOK_ENDPOINT_CONCURRENCY", def: "8", set: field(func(c *Config) *int { return &c.WebhookPerEndpoint }, parsePositiveInt),
		meaning: "attempts in flight per webhook, across all instances (one while it is failing; never more than the deactivation threshold)"},
	{env: "SALESOS_WEBHOOK_LEASE", def: "10s", set: field(func(c *Config) *time.Duration { return &c.WebhookLease }, parseDuration),
		meaning: "how long a claimed delivery is reserved for the instance sending it, renewed while the attempt runs (at least 1s)"},
	{env: "SALESOS_IDEMPOTENCY_LEASE", def: "60s", set: field(func(c *Config) *time.Duration { return &c.IdempotencyLease }, parseDuration),
		meaning: "how long a request holds its `Idempotency-Key` before a retry may take it over"},
}

// ConfigFromEnv reads the configuration. A value that cannot be read is
// reported together with every other such value; once all of them read,
// Validate reports every problem between them.
func ConfigFromEnv() (Config, error) {
	c, errs := load(os.Getenv)
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// DefaultConfig is the configuration with no SALESOS_* variable set.
func DefaultConfig() Config {
	c, errs := load(func(string) string { return "" })
	if len(errs) > 0 {
		// TestSettingsDefaults reads every default; this cannot happen
		// in a build whose tests pass.
		panic(errors.Join(errs...))
	}
	return c
}

// load fills a Config from the table, taking values from getenv.
func load(getenv func(string) string) (Config, []error) {
	var c Config
	var errs []error
	for _, s := range settings {
		if s.def != "" {
			if err := s.set(&c, s.def); err != nil {
				errs = append(errs, fmt.Errorf("%s: default %w", s.env, err))
			}
		}
		if v := getenv(s.env); v != "" {
			if err := s.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.env, err))
			}
		}
	}
	deriveDefaults(&c)
	return c, errs
}

// deriveDefaults fills the settings whose default depends on others.
func deriveDefaults(c *Config) {
	if c.Addr == "" {
		c.Addr = defaultAddr(c.Env)
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = defaultDatabaseURL(c.DataDir)
	}
}

// ConfigTable renders the settings as the README's markdown table.
func ConfigTable() string {
	var b strings.Builder
	b.WriteString("| variable | meaning | default |\n|---|---|---|\n")
	for _, s := range settings {
		def := s.defDoc
		if def == "" {
			def = "`" + s.def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.env, s.meaning, def)
	}
	return b.String()
}

// configHeading is the README section that holds the table.
const configHeading = "## Configuration\n"

// SpliceConfigTable returns doc (the README) with the first markdown table
// after its "## Configuration" heading replaced by ConfigTable, and the
// table it replaced. ok is false when doc has no such table.
func SpliceConfigTable(doc string) (out, old string, ok bool) {
	h := strings.Index(doc, configHeading)
	if h < 0 {
		return doc, "", false
	}
	start := h + len(configHeading)
	// Skip to the first line that starts a table.
	for start < len(doc) && !strings.HasPrefix(doc[start:], "|") {
		nl := strings.IndexByte(doc[start:], '\n')
		if nl < 0 || strings.HasPrefix(doc[start:], "#") {
			return doc, "", false
		}
		start += nl + 1
	}
	end := start
	for end < len(doc) && strings.HasPrefix(doc[end:], "|") {
		nl := strings.IndexByte(doc[end:], '\n')
		if nl < 0 {
			end = len(doc)
			break
		}
		end += nl + 1
	}
	if end == start {
		return doc, "", false
	}
	return doc[:start] + ConfigTable() + doc[end:], doc[start:end], true
}

// field makes a setting's set function from where its value goes in
// Config and how it is parsed.
func field[T any](get func(*Config) *T, parse func(string) (T, error)) func(*Config, string) error {
	return func(c *Config, v string) error {
		x, err := parse(v)
		if err != nil {
			return err
		}
		*get(c) = x
		return nil
	}
}

func parseString(v string) (string, error) { return v, nil }

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a Go duration such as 5s or 250ms", v)
	}
	return d, nil
}

func parsePositiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive whole number", v)
	}
	return n, nil
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}

// parseRateLimits reads "plan=N,plan=N"; plans not named keep their
// published limit (DefaultRateLimits).
func parseRateLimits(v string) (map[string]int, error) {
	out := make(map[string]int, len(DefaultRateLimits))
	for p, n := range DefaultRateLimits {
		out[p] = n
	}
	for _, part := range strings.Split(v, ",") {
		plan, num, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(num)
		if _, known := DefaultRateLimits[plan]; !ok || !known || err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a list such as starter=100,professional=500,enterprise=2000", v)
		}
		out[plan] = n
	}
	return out, nil
}

// parseDurations reads a comma-separated list such as "1m,5m,30m,2h,12h".
func parseDurations(v string) ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a comma-separated list of positive Go durations such as 1m,5m,30m,2h,12h", v)
		}
		out = append(out, d)
	}
	return out, nil
}
