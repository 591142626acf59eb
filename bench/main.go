// Command bench measures SalesOS against PostgreSQL on the machine it runs
// on: raw single-row inserts through pgbench (the reference), appends
// through the event store, a projection catch-up over a large event log,
// and the HTTP API (create and read leads).
//
// Every figure is one JSON object per line on stdout; progress and notes go
// to stderr. The program works in a fresh schema of its own (random name)
// in the given database and drops it when it ends, also on error or
// interrupt. See bench/README.md.
//
//	go run ./bench -database 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The measurements, in the order they run.
const (
	benchPgbench  = "pgbench_insert"
	benchAppend   = "append"
	benchCatchUp  = "projection_catchup"
	benchHTTPPost = "http_post_leads"
	benchHTTPGet  = "http_get_lead"
	// issue 3 and 5 figures
	benchFanout = "webhook_fanout"
	// benchFanoutBurst and benchFanoutHostile are measured by -only
	// webhook_fanout too.
	benchFanoutBurst   = "webhook_fanout_burst"
	benchFanoutHostile = "webhook_fanout_hostile"
	benchAppendESDB    = "append_esdb"
	// issue 13: SalesOS next to a plain CRUD service, both driven by wrk.
	benchVersus = "http_vs_peer"
)

// The core figures again on the embedded SQLite default (issue 6).
const sqliteSuffix = "_sqlite"

var allBenches = []string{
	benchPgbench, benchAppend, benchAppendESDB, benchCatchUp, benchHTTPPost, benchHTTPGet, benchVersus, benchFanout,
	benchAppend + sqliteSuffix, benchCatchUp + sqliteSuffix, benchHTTPPost + sqliteSuffix, benchHTTPGet + sqliteSuffix,
}

type options struct {
	database    string
	duration    time.Duration
	concurrency int
	events      int
	batchSizes  []int
	getLeads    int
	only        map[string]bool
	cpuProfile  string
	pgbenchPath string
}

func (o *options) runs(name string) bool { return len(o.only) == 0 || o.only[name] }

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var only, batches string
	fs.StringVar(&o.database, "database", "", "PostgreSQL URL (required), e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each timed measurement")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent clients (pgbench clients, appending goroutines, HTTP clients)")
	fs.IntVar(&o.events, "events", 1_000_000, "events loaded for the projection catch-up")
	fs.StringVar(&batches, "batch-sizes", "1000,5000", "comma list of catch-up batch sizes, each measured on its own")
	fs.IntVar(&o.getLeads, "get-leads", 1000, "leads created before http_get_lead and read at random")
	fs.StringVar(&only, "only", "", "comma list of measurements to run (default all): "+strings.Join(allBenches, ","))
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of each timed section to PREFIX.<bench>.pprof")
	fs.StringVar(&o.pgbenchPath, "pgbench", "pgbench", "pgbench executable")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.database == "" {
		return nil, errors.New("-database is required")
	}
	if o.duration < time.Second {
		return nil, errors.New("-duration must be at least 1s")
	}
	if o.concurrency < 1 || o.events < 1 || o.getLeads < 1 {
		return nil, errors.New("-concurrency, -events and -get-leads must be positive")
	}
	for _, s := range splitList(batches) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-batch-sizes: %q is not a positive number", s)
		}
		o.batchSizes = append(o.batchSizes, n)
	}
	if len(o.batchSizes) == 0 {
		return nil, errors.New("-batch-sizes is empty")
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, s := range splitList(only) {
			if !slices.Contains(allBenches, s) {
				return nil, fmt.Errorf("-only: unknown measurement %q (known: %s)", s, strings.Join(allBenches, ", "))
			}
			o.only[s] = true
		}
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// result is one JSON line. Fields that do not apply to a measurement are
// left out.
type result struct {
	Bench       string  `json:"bench"`
	Backend     string  `json:"backend"`
	Concurrency int     `json:"concurrency,omitempty"`
	BatchSize   int     `json:"batch_size,omitempty"`
	Events      int64   `json:"events,omitempty"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50ms       float64 `json:"p50_ms,omitempty"`
	P99ms       float64 `json:"p99_ms,omitempty"`
	MaxMs       float64 `json:"max_ms,omitempty"`

	Reference          string  `json:"reference,omitempty"`
	ReferenceOpsPerSec float64 `json:"reference_ops_per_sec,omitempty"`
	Ratio              float64 `json:"ratio,omitempty"`

	Bar      string `json:"bar,omitempty"`
	MeetsBar *bool  `json:"meets_bar,omitempty"`
	// LoadAvg1m is the machine's 1-minute load average when the
	// measurement ended: well above the core count means something else
	// was competing for the CPU and the figure is pessimistic.
	LoadAvg1m float64 `json:"loadavg_1m,omitempty"`
	Note      string  `json:"note,omitempty"`
}

func (r *result) setLatencies(s *samples) {
	r.P50ms = ms(s.percentile(50))
	r.P99ms = ms(s.percentile(99))
	r.MaxMs = ms(s.percentile(100))
}

func (r *result) against(reference string, refOps float64) {
	if refOps <= 0 {
		return
	}
	r.Reference = reference
	r.ReferenceOpsPerSec = round(refOps, 1)
	r.Ratio = round(r.OpsPerSec/refOps, 3)
}

func (r *result) bar(text string, ok bool) {
	r.Bar = text
	r.MeetsBar = &ok
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, digits int) float64 {
	p, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', digits, 64), 64)
	return p
}

var stdout = json.NewEncoder(os.Stdout)

func emit(r result) {
	r.LoadAvg1m = loadAvg()
	r.OpsPerSec = round(r.OpsPerSec, 1)
	r.Seconds = round(r.Seconds, 3)
	_ = stdout.Encode(r)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05")+" "+format+"\n", args...)
}

// profile runs fn under the CPU profiler when -cpuprofile is set.
func (o *options) profile(name string, fn func() error) error {
	if o.cpuProfile == "" {
		return fn()
	}
	f, err := os.Create(o.cpuProfile + "." + name + ".pprof")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	err = fn()
	pprof.StopCPUProfile()
	return err
}

func main() {
	if os.Getenv(hostileEnv) == "1" {
		if err := serveHostileReceivers(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: hostile receivers:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	// A closed stdout or stderr (bench | head) must not kill the program
	// before it has dropped its schema: writes then just fail.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err = run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options) (err error) {
	baseline := runtime.NumGoroutine()
	logf("machine: %d CPUs, %s, GOMAXPROCS=%d", runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0))

	env, err := newEnv(ctx, o.database)
	if err != nil {
		return err
	}
	defer func() {
		if derr := env.drop(); derr != nil {
			err = errors.Join(err, derr)
		}
		checkGoroutines(baseline)
	}()
	logf("database: %s; bench schema %s", env.serverVersion, env.schema)
	if l := loadAvg(); l > float64(runtime.NumCPU())/2 {
		logf("WARNING: load average is %.2f on %d CPUs before starting: other work on this machine will depress the figures", l, runtime.NumCPU())
	}

	var refTPS float64
	if o.runs(benchPgbench) {
		if refTPS, err = runPgbench(ctx, o, env); err != nil {
			return fmt.Errorf("%s: %w", benchPgbench, err)
		}
	} else {
		logf("note: %s not selected, so no ratio is reported", benchPgbench)
	}
	if o.runs(benchAppend) {
		if err := runAppend(ctx, o, env, refTPS); err != nil {
			return fmt.Errorf("%s: %w", benchAppend, err)
		}
	}
	if o.runs(benchAppendESDB) {
		if err := runAppendESDB(ctx, o, refTPS); err != nil {
			return fmt.Errorf("%s: %w", benchAppendESDB, err)
		}
	}
	if o.runs(benchCatchUp) {
		if err := runCatchUp(ctx, o, env); err != nil {
			return fmt.Errorf("%s: %w", benchCatchUp, err)
		}
	}
	pg := postgresTarget(env)
	if o.runs(benchHTTPPost) || o.runs(benchHTTPGet) {
		if err := runHTTP(ctx, o, pg, refTPS); err != nil {
			return fmt.Errorf("http: %w", err)
		}
	}
	if o.runs(benchVersus) {
		if err := runVersusPeer(ctx, o, pg); err != nil {
			return fmt.Errorf("%s: %w", benchVersus, err)
		}
	}
	if o.runs(benchFanout) {
		if err := runFanout(ctx, o, env); err != nil {
			return fmt.Errorf("%s: %w", benchFanout, err)
		}
	}

	lite, err := sqliteTarget()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, lite.close()) }()
	if o.runs(lite.name(benchAppend)) {
		if err := runAppendSQLite(ctx, o, lite, refTPS); err != nil {
			return fmt.Errorf("%s: %w", lite.name(benchAppend), err)
		}
	}
	if o.runs(lite.name(benchCatchUp)) {
		if err := runCatchUpSQLite(ctx, o, lite); err != nil {
			return fmt.Errorf("%s: %w", lite.name(benchCatchUp), err)
		}
	}
	if o.runs(lite.name(benchHTTPPost)) || o.runs(lite.name(benchHTTPGet)) {
		if err := runHTTP(ctx, o, lite, refTPS); err != nil {
			return fmt.Errorf("http on sqlite: %w", err)
		}
	}
	return ctx.Err()
}

// checkGoroutines reports goroutines still running after everything was
// closed (a leak in the bench or in the code under test).
func checkGoroutines(baseline int) {
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		logf("WARNING: %d goroutines still running (started with %d):", n, baseline)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		return
	}
	logf("clean exit: no goroutines left behind (%d running, as at start)", runtime.NumGoroutine())
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// loadAvg is the 1-minute load average (0 when unknown).
func loadAvg() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
