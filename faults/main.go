// Command faults is the fault suite: it builds the real salesos binary, runs
// it as child processes against private databases (a SQLite file, or a
// PostgreSQL cluster of its own — never the shared server on 5432), puts it
// under write load over loopback while it injects faults, and checks the
// service's promises at the end of every scenario:
//
//   - every acknowledged write is in the event history and, after catch-up,
//     in the read model (by id and in the list);
//   - nothing appears twice (one record per logical create, however often
//     it was retried with its Idempotency-Key);
//   - every event reaches every subscribed healthy webhook receiver at least
//     once, with a stable webhook-id and a valid signature;
//   - every projection reaches the event store's head without a restart.
//
// It prints one line per check (PASS or FAIL with its figures), INFO lines
// with measurements, and a last line "N passed, M failed"; it exits 1 when
// any check failed. Every loop and wait is bounded, and every child process
// (servers, Redis, the PostgreSQL cluster) is stopped on exit, on panic and
// on Ctrl-C.
//
//	go run ./faults [-quick] [-scenario NAME] [-backend postgres|sqlite] [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/salesos/salesos/internal/pgcluster"
)

// scenario is one fault and the backends it can run on; the first
// backends run by default.
type scenario struct {
	name     string
	about    string
	backends []string // supported
	defaults []string // run without -backend
	run      func(ctx context.Context, h *harness, sc *scope) error
}

var scenarios = []scenario{
	{name: "kill9", about: "kill -9 of the server every few seconds under write load, restarted each time",
		backends: []string{"postgres", "sqlite"}, defaults: []string{"postgres", "sqlite"}, run: runKill9},
	{name: "pgrestart", about: "PostgreSQL restarted (pg_ctl restart -m fast), then stopped for a while, under write load",
		backends: []string{"postgres"}, defaults: []string{"postgres"}, run: runPGRestart},
	{name: "webhooks", about: "hostile webhook receivers next to a healthy one",
		backends: []string{"postgres", "sqlite"}, defaults: []string{"postgres"}, run: runWebhooks},
	{name: "redis", about: "Redis killed and restarted with shared rate limits on",
		backends: []string{"postgres", "sqlite"}, defaults: []string{"postgres"}, run: runRedis},
	{name: "sigterm", about: "SIGTERM under load with requests in flight, restarted each time",
		backends: []string{"postgres", "sqlite"}, defaults: []string{"postgres", "sqlite"}, run: runSIGTERM},
}

func main() {
	quick := flag.Bool("quick", false, "a few cycles of each scenario (the CI mode, a few minutes in all)")
	only := flag.String("scenario", "", "run only this scenario: "+scenarioNames())
	backend := flag.String("backend", "", "run only on this backend: postgres or sqlite")
	keep := flag.Bool("keep", false, "keep the work directory (server logs, data) even when every check passed")
	settle := flag.Duration("settle", 0, "how long creates without an answer are retried after the faults (default 20s quick, 45s full); must exceed the idempotency lease")
	flag.Parse()
	if *backend != "" && *backend != "postgres" && *backend != "sqlite" {
		fmt.Fprintln(os.Stderr, "faults: -backend is postgres or sqlite")
		os.Exit(2)
	}
	var chosen []scenario
	for _, s := range scenarios {
		if *only == "" || *only == s.name {
			chosen = append(chosen, s)
		}
	}
	if len(chosen) == 0 {
		fmt.Fprintf(os.Stderr, "faults: no scenario %q (known: %s)\n", *only, scenarioNames())
		os.Exit(2)
	}
	p := planFor(*quick)
	if *settle > 0 {
		p.settle = *settle
	}
	os.Exit(run(chosen, *backend, *quick, *keep, p))
}

func scenarioNames() string {
	var ns []string
	for _, s := range scenarios {
		ns = append(ns, s.name)
	}
	return strings.Join(ns, ", ")
}

func run(chosen []scenario, backend string, quick, keep bool, p plan) (code int) {
	start := time.Now()
	h := &harness{quick: quick, plan: p}
	// Children die with us however we end: cleanups run on return, on a
	// panic (re-raised after) and on SIGINT/SIGTERM.
	defer func() {
		if p := recover(); p != nil {
			h.cleanup()
			panic(p)
		}
	}()
	crash = func(p any) {
		fmt.Fprintf(os.Stderr, "faults: panic: %v\n%s", p, debug.Stack())
		h.cleanup()
		os.Exit(2)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nfaults: %v: stopping every child process\n", s)
		h.cleanup()
		if h.work != "" {
			fmt.Fprintf(os.Stderr, "faults: server logs and data kept in %s\n", h.work)
		}
		os.Exit(130)
	}()
	defer h.cleanup()

	work, err := os.MkdirTemp("", "salesos-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	h.work = work
	// The data directories are written by the salesos children (this
	// user) and, for the PostgreSQL cluster, by the postgres user in its
	// own directory: nothing here needs to be shared.
	h.bin = filepath.Join(work, "salesos")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	fmt.Printf("faults: building the server (%s)\n", h.bin)
	build := exec.CommandContext(ctx, "go", "build", "-o", h.bin, "./cmd/salesos")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: go build ./cmd/salesos (run from the module root):", err)
		return 1
	}

	for _, s := range chosen {
		backends := s.defaults
		if backend != "" {
			if !slices.Contains(s.backends, backend) {
				fmt.Printf("SKIP [%s] not run on %s\n", s.name, backend)
				continue
			}
			backends = []string{backend}
		}
		for _, b := range backends {
			sc := &scope{h: h, name: s.name + "/" + b, backend: b}
			fmt.Printf("=== %s: %s (%s)\n", sc.name, s.about, b)
			t0 := time.Now()
			if err := prepare(ctx, h, sc); err != nil {
				h.fail(sc.name, "setup", "%v", err)
				sc.close()
				continue
			}
			if err := s.run(ctx, h, sc); err != nil {
				h.fail(sc.name, "scenario ran to its end", "%v", err)
			}
			sc.close()
			fmt.Printf("--- %s took %s\n", sc.name, time.Since(t0).Round(100*time.Millisecond))
		}
	}
	h.cleanup()
	fmt.Printf("faults: %s in %s\n", map[bool]string{true: "quick mode", false: "full run"}[quick], time.Since(start).Round(time.Second))
	if h.failed > 0 || keep {
		fmt.Printf("faults: server logs and data kept in %s\n", work)
	} else {
		os.RemoveAll(work)
	}
	fmt.Printf("%d passed, %d failed\n", h.passed, h.failed)
	if h.failed > 0 {
		return 1
	}
	return 0
}

// crash ends the program from a panicking goroutine, after the cleanups:
// a panic there would otherwise skip main's deferred calls and leave the
// PostgreSQL cluster (not our child) running.
var crash = func(p any) { panic(p) }

// goSafe runs f on a goroutine whose panic goes through crash.
func goSafe(f func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				crash(p)
			}
		}()
		f()
	}()
}

// prepare gives the scenario a data directory and a database of its own.
func prepare(ctx context.Context, h *harness, sc *scope) error {
	sc.dir = filepath.Join(h.work, strings.ReplaceAll(sc.name, "/", "-"))
	if err := os.MkdirAll(sc.dir, 0o755); err != nil {
		return err
	}
	if sc.backend == "sqlite" {
		sc.dbURL = "sqlite://" + filepath.Join(sc.dir, "salesos.db")
		return nil
	}
	pg, err := h.cluster(ctx)
	if err != nil {
		return err
	}
	sc.pg = pg
	sc.dbURL, err = pg.CreateDatabase(ctx, strings.NewReplacer("/", "_", "-", "_").Replace(sc.name))
	return err
}

// harness holds what lives across scenarios: the binary, the PostgreSQL
// cluster, the tally and the cleanups.
type harness struct {
	quick bool
	plan  plan
	work  string
	bin   string

	mu       sync.Mutex
	pg       *pgcluster.Cluster
	cleanups []func()
	passed   int
	failed   int
}

// cluster starts the private PostgreSQL cluster on first use.
func (h *harness) cluster(ctx context.Context) (*pgcluster.Cluster, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pg != nil {
		return h.pg, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	pg, err := pgcluster.New(ctx, pgcluster.Options{MaxConnections: 300})
	if err != nil {
		return nil, fmt.Errorf("private PostgreSQL cluster: %w", err)
	}
	h.pg = pg
	h.cleanups = append(h.cleanups, func() { pg.Close() })
	fmt.Printf("faults: private PostgreSQL cluster on 127.0.0.1:%d (%s)\n", pg.Port(), pg.Dir())
	return pg, nil
}

// onCleanup registers f to run once at exit, newest first.
func (h *harness) onCleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harness) cleanup() {
	h.mu.Lock()
	fs := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func (h *harness) check(scn, name string, ok bool, format string, args ...any) bool {
	if ok {
		h.pass(scn, name, format, args...)
	} else {
		h.fail(scn, name, format, args...)
	}
	return ok
}

func (h *harness) pass(scn, name, format string, args ...any) {
	h.mu.Lock()
	h.passed++
	h.mu.Unlock()
	fmt.Printf("PASS [%s] %s: %s\n", scn, name, fmt.Sprintf(format, args...))
}

func (h *harness) fail(scn, name, format string, args ...any) {
	h.mu.Lock()
	h.failed++
	h.mu.Unlock()
	fmt.Printf("FAIL [%s] %s: %s\n", scn, name, fmt.Sprintf(format, args...))
}

func (h *harness) info(scn, format string, args ...any) {
	fmt.Printf("INFO [%s] %s\n", scn, fmt.Sprintf(format, args...))
}

// plan is how long and how often: the quick mode runs a few cycles of
// each scenario so that the whole suite fits in a CI step.
type plan struct {
	workers       int
	kill9Cycles   int
	kill9Every    time.Duration
	pgRestarts    int
	pgEvery       time.Duration
	pgStop        time.Duration
	hookOps       int
	redisDown     time.Duration
	sigtermCycles int
	sigtermEvery  time.Duration
	tail          time.Duration // load after the last fault
	settle        time.Duration // retrying unacknowledged creates
	catchUp       time.Duration // projections to the head
	delivery      time.Duration // healthy receivers to every event
}

func planFor(quick bool) plan {
	if quick {
		return plan{workers: 4, kill9Cycles: 3, kill9Every: 3 * time.Second,
			pgRestarts: 3, pgEvery: 2500 * time.Millisecond, pgStop: 5 * time.Second,
			hookOps: 60, redisDown: 4 * time.Second, sigtermCycles: 2, sigtermEvery: 3 * time.Second,
			tail: 2 * time.Second, settle: 20 * time.Second, catchUp: 30 * time.Second, delivery: 40 * time.Second}
	}
	return plan{workers: 8, kill9Cycles: 10, kill9Every: 5 * time.Second,
		pgRestarts: 4, pgEvery: 6 * time.Second, pgStop: 20 * time.Second,
		hookOps: 400, redisDown: 15 * time.Second, sigtermCycles: 5, sigtermEvery: 5 * time.Second,
		tail: 5 * time.Second, settle: 45 * time.Second, catchUp: 60 * time.Second, delivery: 90 * time.Second}
}
