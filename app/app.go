// Package app is the composition root: it turns a Config into a running
// SalesOS (database, event store, projections, HTTP API) and shuts it down
// in order. cmd/salesos, the end-to-end tests and the benchmarks all start
// the service through here, so they exercise the same wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/salesos/salesos/api"
	"github.com/salesos/salesos/auth"
	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/esdb"
	"github.com/salesos/salesos/eventstore/postgres"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/idempotency"
	"github.com/salesos/salesos/metrics"
	"github.com/salesos/salesos/projections"
	"github.com/salesos/salesos/ratelimit"
	"github.com/salesos/salesos/webhooks"
)

// App is an assembled SalesOS instance.
type App struct {
	Config Config
	// DB takes every write of the query side (on SQLite, the file's single
	// writer connection); ReadDB serves queries (DB itself on PostgreSQL).
	DB       *sqlx.DB
	ReadDB   *sqlx.DB
	database *Database
	Store    eventstore.Store
	Runner   *projections.Runner
	// Dispatcher sends webhook deliveries.
	Dispatcher  *webhooks.Dispatcher
	Metrics     *metrics.Metrics
	Idempotency *idempotency.Store
	redis       *redis.Client
	API         *api.Server
	DevIssuer   *auth.DevIssuer // nil when an external issuer is configured
	log         *slog.Logger
}

// Driver is the query side's driver for the app's database.
func (a *App) Driver() driver.Driver { return a.database.Driver }

// Open connects to the database, applies migrations (unless disabled) and
// builds every component. Nothing runs until Serve.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	database, err := OpenDatabase(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	db := database.Write
	if cfg.DBMaxConns > 0 && !database.SQLite() {
		db.SetMaxOpenConns(cfg.DBMaxConns)
		db.SetMaxIdleConns(cfg.DBMaxConns)
	}
	a := &App{Config: cfg, DB: db, ReadDB: database.Read, database: database, log: log}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if cfg.AutoMigrate {
		res, err := database.Migrate(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		if len(res.Applied) > 0 {
			log.Info("applied migrations", "count", len(res.Applied), "version", res.Current)
		}
	}
	if a.Store, err = openEventStore(ctx, cfg, database, log); err != nil {
		return nil, err
	}
	a.Metrics = metrics.New()
	drv := database.Driver
	a.Idempotency = &idempotency.Store{DB: db, Driver: drv, Lease: cfg.IdempotencyLease}
	a.Runner = projections.NewRunner(db, drv, a.Store, projections.Config{Logger: log, Read: database.Read},
		projections.Leads{Driver: drv}, projections.Deals{Driver: drv}, webhooks.FanOut{Streams: a.Store, Driver: drv})
	sender := webhooks.NewSender(webhooks.SenderConfig{Timeout: cfg.WebhookTimeout, AllowPrivate: cfg.WebhookAllowPrivate})
	a.Dispatcher = webhooks.NewDispatcher(db, drv, webhooks.DispatcherConfig{
		Schedule:        cfg.WebhookRetrySchedule,
		DeactivateAfter: cfg.WebhookDeactivateAfter,
		Concurrency:     cfg.WebhookConcurrency,
		PerEndpoint:     cfg.WebhookPerEndpoint,
		Lease:           cfg.WebhookLease,
		Wake:            a.Runner.Progress,
		Sender:          sender,
		Logger:          log,
		OnOutcome:       func(o string) { a.Metrics.Deliveries.WithLabelValues(o).Inc() },
		OnError:         func(stage string) { a.Metrics.DispatcherErrors.WithLabelValues(stage).Inc() },
	})
	a.Metrics.RegisterState(metrics.StateSource{
		Positions: a.Runner.Positions,
		QueueDepth: func(ctx context.Context) (int64, error) {
			var n int64
			err := database.Read.GetContext(ctx, &n, `SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'`)
			return n, err
		},
		Projections: func(ctx context.Context) ([]metrics.ProjectionStatus, error) {
			hs, err := a.Runner.Health(ctx)
			out := make([]metrics.ProjectionStatus, 0, len(hs))
			for _, h := range hs {
				out = append(out, metrics.ProjectionStatus{Name: h.Name, State: h.State, Parked: h.Parked, Errors: h.Errors})
			}
			return out, err
		},
		States: projections.States,
		Logger: log,
	})
	var limiter ratelimit.Limiter = ratelimit.NewMemory()
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("SALESOS_REDIS_URL: %w", err)
		}
		// Fail fast: a slow or absent Redis must not slow requests down.
		opts.MaxRetries = 1
		opts.DialTimeout = 200 * time.Millisecond
		opts.ReadTimeout = 200 * time.Millisecond
		opts.WriteTimeout = 200 * time.Millisecond
		a.redis = redis.NewClient(opts)
		limiter = &ratelimit.Fallback{
			Primary: ratelimit.NewRedis(a.redis), Secondary: limiter, Logger: log,
			OnError: a.Metrics.RateLimitErrors.Inc,
		}
	}

	issuer, audience := cfg.OIDCIssuer, cfg.Audience()
	var devHandler http.Handler
	if issuer == "" {
		if a.DevIssuer, err = auth.LoadOrCreateDevIssuer(cfg.DataDir, auth.DevIssuerURL(cfg.Addr)); err != nil {
			return nil, fmt.Errorf("development issuer: %w", err)
		}
		issuer = a.DevIssuer.Issuer()
		devHandler = a.DevIssuer.Handler()
	}
	verifier, err := auth.NewVerifier(auth.Config{Issuer: issuer, Audience: audience, TenantClaim: cfg.TenantClaim, PlanClaim: cfg.PlanClaim})
	if err != nil {
		return nil, err
	}
	checks := []api.Check{
		{Name: "database", Run: db.PingContext},
		{Name: "event_store", Run: a.Store.Ping},
		{Name: "projections", Run: a.projectionsReady},
		{Name: "webhook_dispatcher", Run: a.dispatcherReady},
	}
	if a.redis != nil {
		// Readiness reports Redis, but requests keep flowing without it
		// (budgets fall back to per-instance).
		checks = append(checks, api.Check{Name: "redis", Optional: true, Run: func(ctx context.Context) error { return a.redis.Ping(ctx).Err() }})
	}
	if a.DevIssuer == nil {
		// The development issuer is this very server, so it is ready when
		// we are; an external one must be reachable.
		checks = append(checks, api.Check{Name: "identity_provider", Run: verifier.Ready})
	}
	a.API = api.New(api.Deps{
		Commands:        &commands.Handler{Store: metrics.CountAppends(a.Store, a.Metrics.EventsAppended)},
		Queries:         projections.Queries{DB: database.Read, Driver: database.Driver},
		Streams:         a.Store,
		Waiter:          a.Runner,
		Verifier:        verifier,
		Checks:          checks,
		Logger:          log,
		ConsistencyWait: cfg.ConsistencyWait,
		DevIssuer:       devHandler,
		Webhooks:        &webhooks.Store{DB: db, Read: database.Read, Driver: database.Driver, AllowPrivate: cfg.WebhookAllowPrivate},
		WebhookSender:   sender,
		Limiter:         limiter,
		RateLimits:      cfg.RateLimits,
		Idempotency:     a.Idempotency,
		Metrics:         a.Metrics,
	})
	ok = true
	return a, nil
}

// openEventStore opens the configured event store: EventStoreDB for an
// esdb:// URL, otherwise the database itself (PostgreSQL or the SQLite
// file). Projection checkpoints always live in the database next to the
// query tables; with EventStoreDB they hold its $all commit positions, so
// switching backends needs a rebuild of the projections.
func openEventStore(ctx context.Context, cfg Config, db *Database, log *slog.Logger) (eventstore.Store, error) {
	switch {
	case isESDBURL(cfg.EventStoreURL):
		s, err := esdb.New(ctx, cfg.EventStoreURL, esdb.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("EventStoreDB: %w", err)
		}
		return s, nil
	case db.SQLite():
		return sqlite.New(ctx, db.Write, db.Read, sqlite.Options{Logger: log})
	}
	return postgres.New(ctx, db.Write, postgres.Options{Logger: log})
}

// Serve runs the projections and the HTTP server on ln until ctx ends, then
// drains in-flight requests (up to ShutdownTimeout) and stops the
// projections after their current batch.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.API.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A backstop only: it counts from the first header byte and ends
		// together with WriteTimeout, so a client it cuts off gets no
		// answer at all. Request bodies have their own, shorter deadline
		// in api (api.DefaultBodyTimeout, answered 408).
		ReadTimeout:  60 * time.Second,
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  120 * time.Second,
		ErrorLog:     slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	projCtx, stopProjections := context.WithCancel(context.WithoutCancel(ctx))
	projDone := make(chan struct{})
	go func() {
		defer close(projDone)
		_ = a.Runner.Run(projCtx)
	}()
	dispCtx, stopDispatcher := context.WithCancel(context.WithoutCancel(ctx))
	dispDone := make(chan struct{})
	go func() {
		defer close(dispDone)
		a.superviseDispatcher(dispCtx)
	}()

	purgeCtx, stopPurge := context.WithCancel(ctx)
	defer stopPurge()
	go a.purgeIdempotencyKeys(purgeCtx)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.shutdown(srv, stopDispatcher, dispDone, stopProjections, projDone)
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// projectionsReady is the readiness check of the query side. A stalled
// projection (behind the head with no progress for a while) fails it: every
// tenant's lists and consistency-token reads are stale or 503 there, and an
// operator must look. Parked events and a projection retrying after an error
// only degrade it: reads keep flowing for every other stream.
func (a *App) projectionsReady(ctx context.Context) error {
	hs, err := a.Runner.Health(ctx)
	if err != nil {
		return err
	}
	stalled, degraded := projections.Summary(hs)
	switch {
	case stalled != "":
		return &api.CheckReport{Reason: stalled}
	case degraded != "":
		return &api.CheckReport{Degraded: true, Reason: degraded}
	}
	return nil
}

// dispatcherStuckAfter is how long the dispatcher may fail to claim,
// record or renew before readiness reports it.
const dispatcherStuckAfter = 30 * time.Second

// dispatcherReady degrades readiness while the webhook dispatcher has been
// failing for a while: no delivery goes out then, though requests are
// served. (A database outage shows in the database check already.)
func (a *App) dispatcherReady(context.Context) error {
	stage, since, err := a.Dispatcher.Health()
	if stage == "" || time.Since(since) < dispatcherStuckAfter {
		return nil
	}
	return &api.CheckReport{Degraded: true, Reason: fmt.Sprintf("webhook dispatcher: %s failing for %s: %v", stage, time.Since(since).Round(time.Second), err)}
}

// superviseDispatcher runs the webhook dispatcher until ctx ends, starting
// it again (after a pause growing to a few seconds) whenever it returns or
// panics while the server runs.
func (a *App) superviseDispatcher(ctx context.Context) {
	superviseWorker(ctx, "webhook dispatcher", a.log, a.Dispatcher.Run)
}

func superviseWorker(ctx context.Context, name string, log *slog.Logger, run func(context.Context) error) {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := func() (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = fmt.Errorf("panic: %v", v)
				}
			}()
			return run(ctx)
		}()
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			pause = 100 * time.Millisecond
		}
		log.Error(name+" stopped; restarting", "error", err, "after", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// shutdown stops everything within Config.ShutdownTimeout, all of it:
// the HTTP server drains its requests (and closes the connections of those
// still running at the deadline), the dispatcher claims nothing more and
// lets its attempts finish, cutting short whatever still runs shortly
// before the deadline (recorded as interrupted: due again, not counted
// against the endpoint), and the projections stop after their batch.
func (a *App) shutdown(srv *http.Server, stopDispatcher func(), dispDone <-chan struct{}, stopProjections func(), projDone <-chan struct{}) {
	timeout := a.Config.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultConfig().ShutdownTimeout
	}
	deadline := time.Now().Add(timeout)
	shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	// No new attempts from the moment shutdown starts; the ones in flight
	// are interrupted with enough time left to record them.
	stopDispatcher()
	margin := min(time.Second, timeout/4)
	interrupt := time.AfterFunc(time.Until(deadline.Add(-margin)), a.Dispatcher.Interrupt)
	defer interrupt.Stop()

	if err := srv.Shutdown(shutCtx); err != nil {
		a.log.Warn("HTTP shutdown did not drain in time; closing the remaining connections", "error", err)
		_ = srv.Close()
	}
	stopProjections()
	for name, done := range map[string]<-chan struct{}{"webhook dispatcher": dispDone, "projections": projDone} {
		select {
		case <-done:
		case <-shutCtx.Done():
			a.log.Warn("shutdown deadline reached before this stopped; what it had not committed is redone after the restart", "worker", name)
		}
	}
}

// purgeIdempotencyKeys deletes expired idempotency keys every hour.
func (a *App) purgeIdempotencyKeys(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := a.Idempotency.Purge(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("purging expired idempotency keys failed", "error", err)
		} else if n > 0 {
			a.log.Info("purged expired idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DatabaseName says where the data lives, for the startup log: the SQLite
// file, or the PostgreSQL server and database (never the password).
func (a *App) DatabaseName() string {
	if a.database.SQLite() {
		return "sqlite " + a.database.SQLitePath
	}
	if u, err := url.Parse(a.Config.DatabaseURL); err == nil {
		return "postgres " + u.Host + u.Path
	}
	return "postgres"
}

// Close releases the event store and the database.
func (a *App) Close() {
	if a.redis != nil {
		a.redis.Close()
	}
	if a.Store != nil {
		a.Store.Close()
	}
	if a.database != nil {
		a.database.Close()
	}
}
