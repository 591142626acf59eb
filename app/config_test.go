package app

import (
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{
			name: "defaults",
			env:  map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y"},
			check: func(t *testing.T, c Config) {
				if c.Addr != "localhost:8080" || c.DataDir != "./data" || c.Env != "development" || c.ConsistencyWait != 5*time.Second || !c.AutoMigrate {
					t.Fatalf("defaults: %+v", c)
				}
				if c.Audience() != DevAudience {
					t.Fatalf("development audience: %q", c.Audience())
				}
			},
		},
		{
			name:    "production without an issuer is refused",
			env:     map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_ENV": "production"},
			wantErr: "SALESOS_ENV=production needs SALESOS_OIDC_ISSUER",
		},
		{
			name:    "staging without an issuer is refused",
			env:     map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_ENV": "staging"},
			wantErr: "SALESOS_ENV=staging needs SALESOS_OIDC_ISSUER",
		},
		{
			name: "outside development the default address is every interface",
			env: map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_ENV": "production",
				"SALESOS_OIDC_ISSUER": "https://t.auth0.com/", "SALESOS_OIDC_AUDIENCE": "https://api"},
			check: func(t *testing.T, c Config) {
				if c.Addr != ":8080" {
					t.Fatalf("Addr = %q", c.Addr)
				}
			},
		},
		{
			name: "an explicit address is kept in development",
			env:  map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_ADDR": ":9090"},
			check: func(t *testing.T, c Config) {
				if c.Addr != ":9090" {
					t.Fatalf("Addr = %q", c.Addr)
				}
			},
		},
		{
			name: "private webhook targets are refused in production",
			env: map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_ENV": "production",
				"SALESOS_OIDC_ISSUER": "https://t.auth0.com/", "SALESOS_OIDC_AUDIENCE": "https://api",
				"SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"},
			wantErr: "SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS=true is refused in production",
		},
		{
			name:    "a webhook lease too short to renew is refused",
			env:     map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_WEBHOOK_LEASE": "300ms"},
			wantErr: "SALESOS_WEBHOOK_LEASE (300ms) must be at least 1s",
		},
		{
			name:    "a per-endpoint limit above the global one is refused",
			env:     map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_WEBHOOK_CONCURRENCY": "4", "SALESOS_WEBHOOK_ENDPOINT_CONCURRENCY": "8"},
			wantErr: "cannot exceed SALESOS_WEBHOOK_CONCURRENCY",
		},
		{
			name:    "too few database connections for the workers",
			env:     map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_DB_MAX_CONNS": "3"},
			wantErr: "SALESOS_DB_MAX_CONNS=3 is too few",
		},
		{
			name: "the connection floor does not apply to SQLite",
			env:  map[string]string{"SALESOS_DATABASE_URL": "sqlite://x.db", "SALESOS_DB_MAX_CONNS": "3"},
			check: func(t *testing.T, c Config) {
				if c.DBMaxConns != 3 {
					t.Fatalf("DBMaxConns = %d", c.DBMaxConns)
				}
			},
		},
		{
			name:    "issuer without audience",
			env:     map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_OIDC_ISSUER": "https://t.auth0.com/"},
			wantErr: "SALESOS_OIDC_AUDIENCE is not",
		},
		{
			name:    "every problem is reported at once",
			env:     map[string]string{"SALESOS_ENV": "prod", "SALESOS_CONSISTENCY_WAIT": "soon"},
			wantErr: "SALESOS_CONSISTENCY_WAIT",
		},
		{
			name:    "unsupported database",
			env:     map[string]string{"SALESOS_DATABASE_URL": "mysql://x"},
			wantErr: "use postgres://user@host:5432/db or sqlite://",
		},
		{
			name: "no database configured: the SQLite file in the data directory",
			env:  map[string]string{"SALESOS_DATA_DIR": "/var/lib/salesos"},
			check: func(t *testing.T, c Config) {
				if c.DatabaseURL != "sqlite:///var/lib/salesos/salesos.db" {
					t.Fatalf("DatabaseURL = %q", c.DatabaseURL)
				}
			},
		},
		{
			name:    "an event store in another SQL database is refused",
			env:     map[string]string{"SALESOS_DATABASE_URL": "postgres://x/y", "SALESOS_EVENTSTORE_URL": "sqlite://events.db"},
			wantErr: "must be the database of SALESOS_DATABASE_URL",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Every variable the table knows, so the caller's environment
			// cannot leak into a case.
			for _, st := range settings {
				t.Setenv(st.env, tc.env[st.env])
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := ConfigFromEnv()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
