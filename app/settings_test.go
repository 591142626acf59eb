package app

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/salesos/salesos/idempotency"
	"github.com/salesos/salesos/webhooks"
)

// TestREADMEConfigTable keeps the README's configuration table what the
// settings table renders.
func TestREADMEConfigTable(t *testing.T) {
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, got, ok := SpliceConfigTable(string(doc))
	if !ok {
		t.Fatalf("README.md has no table under %q; add this one:\n\n%s", strings.TrimSpace(configHeading), ConfigTable())
	}
	if want := ConfigTable(); got != want {
		t.Errorf("README.md's configuration table differs from the settings in app/settings.go.\n"+
			"Run `go generate ./app`, or replace the table with:\n\n%s", want)
	}
}

// TestSettingsDefaults reads every default the way a variable would be
// read, and checks the defaults that components still keep of their own
// agree with the table (until those components take them from Config).
func TestSettingsDefaults(t *testing.T) {
	c, errs := load(func(string) string { return "" })
	for _, err := range errs {
		t.Error(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	seen := map[string]bool{}
	for _, s := range settings {
		if seen[s.env] {
			t.Errorf("%s is in the table twice", s.env)
		}
		seen[s.env] = true
		if !strings.HasPrefix(s.env, "SALESOS_") || s.meaning == "" || s.set == nil {
			t.Errorf("%s: every setting needs a SALESOS_ name, a meaning and a set function", s.env)
		}
		if s.def == "" && s.defDoc == "" {
			t.Errorf("%s: say in defDoc what happens when it is unset", s.env)
		}
	}
	for name, pair := range map[string][2]any{
		"webhooks.DefaultSchedule":    {c.WebhookRetrySchedule, webhooks.DefaultSchedule},
		"webhooks.DefaultConcurrency": {c.WebhookConcurrency, webhooks.DefaultConcurrency},
		"webhooks.DefaultPerEndpoint": {c.WebhookPerEndpoint, webhooks.DefaultPerEndpoint},
		"webhooks.DefaultLease":       {c.WebhookLease, webhooks.DefaultLease},
		"idempotency.DefaultLease":    {c.IdempotencyLease, idempotency.DefaultLease},
		"DefaultRateLimits":           {c.RateLimits, DefaultRateLimits},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("the table's default %v differs from %s = %v", pair[0], name, pair[1])
		}
	}
	if pinnedDBConns != 4 {
		t.Error("SALESOS_DB_MAX_CONNS's meaning says four connections are held by the workers: update it")
	}
	if c.Addr != "localhost:8080" || c.DatabaseURL != "sqlite://data/salesos.db" {
		t.Errorf("derived defaults: Addr %q, DatabaseURL %q", c.Addr, c.DatabaseURL)
	}
}

// A value that does not read keeps the default and names its variable.
func TestSettingsParseErrors(t *testing.T) {
	env := map[string]string{
		"SALESOS_WEBHOOK_CONCURRENCY":    "0",
		"SALESOS_AUTO_MIGRATE":           "maybe",
		"SALESOS_RATE_LIMITS":            "gold=5",
		"SALESOS_WEBHOOK_RETRY_SCHEDULE": "1m,-5m",
	}
	c, errs := load(func(k string) string { return env[k] })
	var msgs []string
	for _, err := range errs {
		msgs = append(msgs, err.Error())
	}
	want := []string{
		`SALESOS_AUTO_MIGRATE: "maybe" is not true or false`,
		`SALESOS_RATE_LIMITS: "gold=5" is not a list such as starter=100,professional=500,enterprise=2000`,
		`SALESOS_WEBHOOK_RETRY_SCHEDULE: "1m,-5m" is not a comma-separated list of positive Go durations such as 1m,5m,30m,2h,12h`,
		`SALESOS_WEBHOOK_CONCURRENCY: "0" is not a positive whole number`,
	}
	if !reflect.DeepEqual(msgs, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
	if c.WebhookConcurrency != webhooks.DefaultConcurrency || !c.AutoMigrate || c.RateLimits["starter"] != 100 {
		t.Fatalf("a value that does not read must leave the default: %+v", c)
	}
}
