package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// runPgbench measures what PostgreSQL itself does on this machine with one
// single-row INSERT of a lead-sized JSON value per transaction: the bar the
// event store is held to. It returns the tps.
func runPgbench(ctx context.Context, o *options, e *env) (float64, error) {
	if err := e.exec(ctx, `CREATE TABLE bench_raw (id bigserial PRIMARY KEY, data json NOT NULL, created_at timestamptz DEFAULT now())`); err != nil {
		return 0, err
	}
	defer e.exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS bench_raw`)

	doc, err := sampleLeadCreatedJSON()
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "salesos-pgbench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "insert.sql")
	sqlText := "INSERT INTO bench_raw (data) VALUES ('" + strings.ReplaceAll(string(doc), "'", "''") + "');\n"
	if err := os.WriteFile(script, []byte(sqlText), 0o600); err != nil {
		return 0, err
	}

	secs := int(math.Ceil(o.duration.Seconds()))
	jobs := min(2, o.concurrency)
	args := []string{
		"-n", "-c", strconv.Itoa(o.concurrency), "-j", strconv.Itoa(jobs), "-T", strconv.Itoa(secs), "-M", "prepared",
		"-f", script, "-l", "--log-prefix=" + filepath.Join(dir, "txlog"),
		e.baseURL,
	}
	logf("%s: pgbench %s (JSON value %d bytes, search_path %s)", benchPgbench, strings.Join(args[:len(args)-1], " "), len(doc), e.schema)
	cmd := exec.CommandContext(ctx, o.pgbenchPath, args...)
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c search_path="+e.schema)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("pgbench: %w\n%s%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	m := reTPS.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(m[1], 64)
	var processed, failed int64
	if m := reProcessed.FindStringSubmatch(out); m != nil {
		processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reFailed.FindStringSubmatch(out); m != nil {
		failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	lat, err := readPgbenchLogs(dir)
	if err != nil {
		return 0, err
	}
	r := result{
		Bench: benchPgbench, Backend: "postgres", Concurrency: o.concurrency,
		Ops: processed, Errors: failed, Seconds: float64(secs), OpsPerSec: tps,
		Note: "pgbench -M prepared, one single-row INSERT of a json value per transaction; latencies from its per-transaction log",
	}
	r.setLatencies(lat)
	emit(r)
	return tps, nil
}

// readPgbenchLogs reads the per-transaction logs (-l): the third field of
// each line is the transaction's latency in microseconds.
func readPgbenchLogs(dir string) (*samples, error) {
	files, err := filepath.Glob(filepath.Join(dir, "txlog*"))
	if err != nil {
		return nil, err
	}
	s := &samples{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				continue
			}
			s.add(time.Duration(us) * time.Microsecond)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return s, nil
}
