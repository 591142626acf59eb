// Package pgcluster runs a private, throw-away PostgreSQL cluster: initdb
// into a temporary directory, pg_ctl on a free loopback port. Fault tests use
// it to stop and restart PostgreSQL under load without ever touching the
// shared server on 5432, which other tests and people depend on.
//
// PostgreSQL refuses to run as root, so when this process is root the
// server binaries run as the "postgres" OS user (set Options.User to choose
// another), and the temporary directory is handed to that user.
//
// A cluster started by pg_ctl is not a child of this process: Close (or
// Kill) must be called, or the server outlives the program.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options tune a cluster; the zero value is a fast, non-durable cluster.
type Options struct {
	// BinDir holds initdb and pg_ctl. Default: the newest
	// /usr/lib/postgresql/*/bin, else the directory of pg_ctl on PATH.
	BinDir string
	// User runs the server when this process is root. Default "postgres".
	User string
	// Durable keeps fsync on. Off by default: a fault test kills the
	// server, not the machine, so flushing to disk only costs time.
	Durable bool
	// MaxConnections, default 200.
	MaxConnections int
	// StartTimeout bounds each pg_ctl start/stop/restart, default 60s.
	StartTimeout time.Duration
}

// Cluster is one private PostgreSQL server.
type Cluster struct {
	dir     string // owned by the server's user; data/ and the log inside
	port    int
	bin     string
	cred    *syscall.Credential
	timeout time.Duration
}

// New creates a cluster and starts it.
func New(ctx context.Context, o Options) (*Cluster, error) {
	bin, err := findBinDir(o.BinDir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, timeout: o.StartTimeout}
	if c.timeout <= 0 {
		c.timeout = 60 * time.Second
	}
	if os.Geteuid() == 0 {
		name := o.User
		if name == "" {
			name = "postgres"
		}
		if c.cred, err = credential(name); err != nil {
			return nil, err
		}
	}
	if c.dir, err = os.MkdirTemp("", "salesos-pgcluster-"); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			c.removeDir()
			return nil, err
		}
	}
	if c.port, err = FreePort(); err != nil {
		c.removeDir()
		return nil, err
	}
	if _, err := c.run(ctx, "initdb", "-D", c.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"); err != nil {
		c.removeDir()
		return nil, fmt.Errorf("initdb: %w", err)
	}
	maxConns := o.MaxConnections
	if maxConns <= 0 {
		maxConns = 200
	}
	conf := fmt.Sprintf("\n# pgcluster: private loopback server\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nmax_connections = %d\n",
		c.port, c.dir, maxConns)
	if !o.Durable {
		conf += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
	}
	if err := appendFile(filepath.Join(c.dataDir(), "postgresql.conf"), conf); err != nil {
		c.removeDir()
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		c.Kill()
		c.removeDir()
		return nil, err
	}
	return c, nil
}

// Port is the loopback TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// Dir is the cluster's temporary directory (data/ and server.log inside).
func (c *Cluster) Dir() string { return c.dir }

// URL is a connection URL for database db as the superuser "postgres".
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// CreateDatabase creates database name and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return c.URL(name), nil
}

// Start starts a stopped server and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	_, err := c.pgctl(ctx, "start", "-l", c.logFile())
	return err
}

// Running reports whether the server is up (pg_ctl status).
func (c *Cluster) Running(ctx context.Context) bool {
	_, err := c.run(ctx, "pg_ctl", "status", "-D", c.dataDir())
	return err == nil
}

// Stop shuts the server down with the "fast" mode: sessions are
// terminated, which is what clients see in a real outage.
func (c *Cluster) Stop(ctx context.Context) error {
	_, err := c.pgctl(ctx, "stop", "-m", "fast")
	return err
}

// Restart is pg_ctl restart -m fast.
func (c *Cluster) Restart(ctx context.Context) error {
	_, err := c.pgctl(ctx, "restart", "-m", "fast", "-l", c.logFile())
	return err
}

// Kill stops the server at once (immediate mode), falling back to SIGKILL
// of the postmaster when pg_ctl cannot. It never fails: it is for cleanup.
func (c *Cluster) Kill() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.pgctl(ctx, "stop", "-m", "immediate"); err == nil {
		return
	}
	if pid := c.postmasterPID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Close stops the server and removes its directory.
func (c *Cluster) Close() error {
	c.Kill()
	return c.removeDir()
}

// Log returns the server log (for failure reports).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.logFile())
	return string(b)
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }
func (c *Cluster) logFile() string { return filepath.Join(c.dir, "server.log") }

func (c *Cluster) pgctl(ctx context.Context, verb string, args ...string) (string, error) {
	secs := strconv.Itoa(int(c.timeout / time.Second))
	all := append([]string{verb, "-D", c.dataDir(), "-w", "-t", secs}, args...)
	ctx, cancel := context.WithTimeout(ctx, c.timeout+10*time.Second)
	defer cancel()
	out, err := c.run(ctx, "pg_ctl", all...)
	if err != nil {
		return out, fmt.Errorf("pg_ctl %s: %w", verb, err)
	}
	return out, nil
}

// run runs one of the server's programs as the server's user.
func (c *Cluster) run(ctx context.Context, prog string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if c.cred != nil {
		// Tools look at HOME and some refuse to start from a directory
		// they cannot read; c.dir is theirs.
		cmd.Env = append(os.Environ(), "HOME="+c.dir)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func (c *Cluster) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

func (c *Cluster) removeDir() error {
	if c.dir == "" {
		return nil
	}
	return os.RemoveAll(c.dir)
}

// FreePort asks the kernel for a free loopback TCP port. Another process
// could take it before it is used; on a test machine that is rare enough.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func findBinDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(versions, func(i, j int) bool { return pgVersion(versions[i]) < pgVersion(versions[j]) })
	if len(versions) > 0 {
		return filepath.Dir(versions[len(versions)-1]), nil
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgcluster: no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH")
}

// pgVersion reads 15 out of /usr/lib/postgresql/15/bin/pg_ctl.
func pgVersion(p string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return n
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: PostgreSQL will not run as root and there is no user %q to run it as: %w", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
