// Command salesos is the SalesOS backend: one binary for the API server and
// its operator commands. Run "salesos help" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/auth"
	"github.com/salesos/salesos/projections"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `salesos — the SalesOS backend

Usage:
  salesos serve                         run the API server (applies migrations first)
  salesos migrate                       apply pending database migrations and exit
  salesos dev-token [flags]             print a token from the built-in development issuer
  salesos projections rebuild [NAME]    rebuild query tables from the events (leads, deals; default all)
  salesos projections parked            list the events projections could not apply and set aside
  salesos projections retry [--position N] [NAME]
                                        re-apply parked events (of NAME, or the stream of position N)
  salesos version                       print the version

Configuration comes from SALESOS_* environment variables; see README.md.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "salesos:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve()
	case "migrate":
		return migrate()
	case "dev-token":
		return devToken(args[1:], stdout)
	case "projections":
		if len(args) >= 2 {
			switch args[1] {
			case "rebuild":
				return rebuild(args[2:], stdout)
			case "parked":
				return listParked(stdout)
			case "retry":
				return retryParked(args[2:], stdout)
			}
		}
		return errors.New(`usage: salesos projections rebuild [leads|deals] | parked | retry [--position N] [leads|deals|webhook_fanout]`)
	case "version":
		fmt.Fprintln(stdout, "salesos", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func logger(cfg app.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func serve() error {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	log := logger(cfg)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	log.Info("salesos listening", "addr", ln.Addr().String(), "version", version, "env", cfg.Env, "database", a.DatabaseName())
	if a.DevIssuer != nil {
		base := strings.TrimSuffix(a.DevIssuer.Issuer(), "/_dev/oidc")
		fmt.Fprintf(os.Stderr, `
Development mode: tokens come from the built-in issuer at %s
Get one and make a first call:

  TOKEN=$(go run ./cmd/salesos dev-token --org org_demo)
  curl -s %s/v1/leads -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"name":"Ada Lovelace"}'

`, a.DevIssuer.Issuer(), base)
	}
	return a.Serve(ctx, ln)
}

// openConfigured opens the database the environment configures, for the
// subcommands that work on it without a server.
func openConfigured(ctx context.Context) (*app.Database, error) {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	return app.OpenDatabase(ctx, cfg.DatabaseURL)
}

func migrate() error {
	ctx := context.Background()
	db, err := openConfigured(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("applied %d migration(s); schema at version %d\n", len(res.Applied), res.Current)
	return nil
}

var allScopes = "read:leads write:leads read:deals write:deals manage:webhooks write:imports read:events"

func devToken(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev-token", flag.ContinueOnError)
	org := fs.String("org", "org_dev", "organization (org_id claim)")
	plan := fs.String("plan", "starter", "plan: starter, professional or enterprise")
	scope := fs.String("scope", allScopes, "space-separated scopes")
	sub := fs.String("sub", "auth0|dev-user", `subject; end it in "@clients" for a client-credentials token`)
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	if cfg.OIDCIssuer != "" {
		return errors.New("SALESOS_OIDC_ISSUER is set: tokens come from that issuer, not from the development issuer")
	}
	if cfg.Env == "production" {
		return errors.New("the development issuer is disabled when SALESOS_ENV=production")
	}
	iss, err := auth.LoadOrCreateDevIssuer(cfg.DataDir, auth.DevIssuerURL(cfg.Addr))
	if err != nil {
		return err
	}
	tok, err := iss.Mint(auth.DevTokenRequest{OrgID: *org, Plan: *plan, Sub: *sub, Audience: cfg.Audience(), Scopes: strings.Fields(*scope), TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func rebuild(args []string, stdout io.Writer) error {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	if len(args) > 0 && args[0] != projections.LeadsName && args[0] != projections.DealsName {
		return fmt.Errorf("no projection named %q (known: leads, deals)", args[0])
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg.AutoMigrate = true
	a, err := app.Open(ctx, cfg, logger(cfg))
	if err != nil {
		return err
	}
	defer a.Close()
	all := []projections.Projection{projections.Leads{Driver: a.Driver()}, projections.Deals{Driver: a.Driver()}}
	var chosen []projections.Projection
	for _, p := range all {
		if len(args) == 0 || args[0] == p.Name() {
			chosen = append(chosen, p)
		}
	}
	for _, p := range chosen {
		start := time.Now()
		if err := projections.Rebuild(ctx, a.DB, a.Driver(), p); err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		pos, err := projections.CatchUp(ctx, a.DB, a.Driver(), a.Store, p, 2000)
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		fmt.Fprintf(stdout, "rebuilt %s up to position %d in %s\n", p.Name(), pos, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// listParked prints the parked events of every projection, oldest first.
func listParked(stdout io.Writer) error {
	ctx := context.Background()
	db, err := openConfigured(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	parked, err := projections.ListParked(ctx, db.Read, "")
	if err != nil {
		return fmt.Errorf("list parked events (is the schema migrated?): %w", err)
	}
	if len(parked) == 0 {
		fmt.Fprintln(stdout, "no parked events")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PROJECTION\tPOSITION\tSTREAM\tTYPE\tATTEMPTS\tLAST ATTEMPT\tERROR")
	for _, p := range parked {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%s\t%s\n", p.Projection, p.Position, p.StreamID, p.EventType, p.Attempts,
			p.LastAttemptAt.Format(time.RFC3339), strings.ReplaceAll(p.Error, "\n", " "))
	}
	return w.Flush()
}

// retryParked re-applies parked events: of one projection or all, of one
// stream (the one holding --position) or all. It fails when any event is
// still parked afterwards, so that scripts notice.
func retryParked(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("projections retry", flag.ContinueOnError)
	position := fs.Uint64("position", 0, "retry only the stream of the parked event at this position")
	if err := fs.Parse(args); err != nil {
		return err
	}
	name := ""
	if fs.NArg() > 0 {
		name = fs.Arg(0)
		// Flags may come after the name too.
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q", fs.Args())
		}
	}
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg.AutoMigrate = true
	a, err := app.Open(ctx, cfg, logger(cfg))
	if err != nil {
		return err
	}
	defer a.Close()
	all := a.Runner.Projections()
	var known []string
	tried, still := 0, 0
	for _, p := range all {
		known = append(known, p.Name())
		if name != "" && name != p.Name() {
			continue
		}
		tried++
		res, err := projections.RetryParked(ctx, a.DB, a.Driver(), a.Store, p, *position)
		if errors.Is(err, projections.ErrNotParked) && name == "" {
			tried--
			continue // that position is parked by another projection
		}
		if err != nil {
			return fmt.Errorf("retry %s: %w", p.Name(), err)
		}
		still += res.StillParked
		fmt.Fprintf(stdout, "%s: %d re-applied, %d still parked\n", p.Name(), res.Applied, res.StillParked)
	}
	if tried == 0 && *position > 0 && name == "" {
		return fmt.Errorf("position %d: %w", *position, projections.ErrNotParked)
	}
	if tried == 0 {
		return fmt.Errorf("no projection named %q (known: %s)", name, strings.Join(known, ", "))
	}
	if still > 0 {
		return fmt.Errorf("%d event(s) still parked; see salesos projections parked", still)
	}
	return nil
}
