package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/salesos/salesos/internal/pgcluster"
)

// scope is one scenario run on one backend.
type scope struct {
	h       *harness
	name    string
	backend string
	dir     string
	dbURL   string
	pg      *pgcluster.Cluster

	mu      sync.Mutex
	closers []func()
}

func (sc *scope) onClose(f func()) {
	sc.mu.Lock()
	sc.closers = append(sc.closers, f)
	sc.mu.Unlock()
}

// close stops what the scenario started (its servers, receivers, Redis).
func (sc *scope) close() {
	sc.mu.Lock()
	fs := sc.closers
	sc.closers = nil
	sc.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// serverEnv is the configuration every scenario starts from; extra
// entries override it. The development issuer is used (no
// SALESOS_OIDC_ISSUER), and SALESOS_* variables of the calling shell are
// dropped so that they cannot change what is tested.
func (sc *scope) serverEnv(addr string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SALESOS_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"SALESOS_ENV=development",
		"SALESOS_ADDR="+addr,
		"SALESOS_DATA_DIR="+filepath.Join(sc.dir, "data"),
		"SALESOS_DATABASE_URL="+sc.dbURL,
		"SALESOS_LOG_LEVEL=info",
		"SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS=true",
		// Short retries and no deactivation: failing receivers keep being
		// tried for the whole scenario instead of being switched off.
		"SALESOS_WEBHOOK_RETRY_SCHEDULE=1s,1s,2s,2s,3s",
		"SALESOS_WEBHOOK_DEACTIVATE_AFTER=1000000",
		// A killed instance's leases expire quickly, so its in-flight
		// deliveries are taken over within the scenario.
		"SALESOS_WEBHOOK_TIMEOUT=3s",
		"SALESOS_WEBHOOK_LEASE=6s",
		// The load's organization is on enterprise (never limited here);
		// starter is tiny so that a burst shows whether limits apply.
		"SALESOS_RATE_LIMITS=starter=20,professional=1000000,enterprise=1000000",
		"SALESOS_SHUTDOWN_TIMEOUT=20s",
		// A retry may take over a key whose first attempt died after this;
		// short, so the settle check does not wait out the 60 s default.
		"SALESOS_IDEMPOTENCY_LEASE=5s",
	)
	return append(env, extra...)
}

// server is the salesos binary run as "salesos serve", restartable on the
// same address and data directory (so tokens stay valid).
type server struct {
	sc   *scope
	addr string
	env  []string
	log  *os.File

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	exit   error
	starts int
	termAt time.Time
}

func newServer(sc *scope, extra ...string) (*server, error) {
	port, err := pgcluster.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := os.MkdirAll(filepath.Join(sc.dir, "data"), 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(sc.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	s := &server{sc: sc, addr: addr, env: sc.serverEnv(addr, extra...), log: log}
	// Registered with the harness too, so that Ctrl-C or a panic in the
	// middle of a scenario still kills the process group.
	sc.h.onCleanup(s.kill)
	sc.onClose(func() { s.kill(); log.Close() })
	return s, nil
}

func (s *server) base() string { return "http://" + s.addr }

// start runs the server and waits until /healthz answers.
func (s *server) start(ctx context.Context) error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("server already running")
	}
	s.starts++
	fmt.Fprintf(s.log, "\n===== faults: start #%d at %s =====\n", s.starts, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(s.sc.h.bin, "serve")
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// A process group of its own, so that a kill reaches whatever it
	// starts; and SIGKILL should this program die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exit = err
		s.mu.Unlock()
		close(done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.reap()
			return fmt.Errorf("the server exited at start (%v); see %s", s.exitErr(), s.log.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if status(ctx, s.base()+"/healthz") == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("the server did not answer /healthz within 60s; see %s", s.log.Name())
}

func (s *server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exit
}

// reap forgets a process that has exited.
func (s *server) reap() {
	s.mu.Lock()
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
}

// kill is kill -9 of the whole process group; it waits (bounded) for the
// process to be gone so that the port is free for the next start.
func (s *server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	s.reap()
}

// get is the body of an unauthenticated GET (for failure messages).
func (s *server) get(ctx context.Context, path string) []byte {
	r := (&api{base: s.base()}).do(ctx, http.MethodGet, path, nil)
	if r.err != nil {
		return []byte(r.err.Error())
	}
	return []byte(fmt.Sprintf("%d %s", r.status, r.body))
}

// signal sends SIGTERM; waitExit then waits for the process to end.
func (s *server) signal() error {
	s.mu.Lock()
	cmd := s.cmd
	s.termAt = time.Now()
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("server not running")
	}
	return cmd.Process.Signal(syscall.SIGTERM)
}

// waitExit waits up to limit for the exit after signal; it returns the
// time since the signal and the exit error (nil for status 0). A server
// still running at the limit is killed.
func (s *server) waitExit(limit time.Duration) (time.Duration, error) {
	s.mu.Lock()
	done, at := s.done, s.termAt
	s.mu.Unlock()
	if done == nil {
		return 0, errors.New("server not running")
	}
	select {
	case <-done:
		err := s.exitErr()
		s.reap()
		return time.Since(at), err
	case <-time.After(limit):
		s.kill()
		return time.Since(at), fmt.Errorf("still running %s after SIGTERM; killed", limit)
	}
}

// devToken mints a token with the binary's dev-token command, run with the
// server's environment (same data directory, so the same signing key).
func (s *server) devToken(ctx context.Context, org, plan string) (string, error) {
	cmd := exec.CommandContext(ctx, s.sc.h.bin, "dev-token", "--org", org, "--plan", plan, "--ttl", "6h")
	cmd.Env = s.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("dev-token: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// redisServer is a private redis-server on its own port, a child process.
type redisServer struct {
	port int
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newRedis(sc *scope) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server is not installed (apt-get install redis-server)")
	}
	port, err := pgcluster.FreePort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{port: port, dir: filepath.Join(sc.dir, "redis")}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	sc.h.onCleanup(r.kill)
	sc.onClose(r.kill)
	return r, nil
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", r.dir)
	logf, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	r.cmd, r.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := r.dbsize(ctx); err == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("redis-server exited at start")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("redis-server did not answer within 20s")
}

func (r *redisServer) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
	}
	r.cmd = nil
}
