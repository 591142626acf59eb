package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/salesos/salesos/app"
)

// runVersusPeer drives SalesOS and the plain CRUD peer (peer.go) with the
// same external load generator, wrk (2 threads, o.concurrency
// connections), one after the other on the same database and machine:
// POST /v1/leads for o.duration, then GET /v1/leads/{id} of 1,000 leads
// each has created, at random. SalesOS answers GETs with read-your-writes
// (its stream probe included). Issue 13's bars are the ratios.
func runVersusPeer(ctx context.Context, o *options, t *target) error {
	s, dbURL, err := startFresh(ctx, t)
	if err != nil {
		return err
	}
	defer s.closeLogged("versus")
	// The peer gets as many connections as SalesOS's pool.
	conns := s.app.Config.DBMaxConns
	if conns == 0 {
		conns = app.DefaultConfig().DBMaxConns
	}
	p, err := startPeer(ctx, dbURL, int32(conns))
	if err != nil {
		return fmt.Errorf("start peer: %w", err)
	}
	defer p.close()
	dir, err := os.MkdirTemp("", "salesos-bench-wrk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := s.waitProjections(ctx); err != nil {
		return err
	}

	sides := []struct {
		name, base, token string
	}{{"salesos", s.base, s.token}, {"peer", p.base, ""}}
	post := map[string]wrkResult{}
	for _, side := range sides {
		script := strings.Replace(wrkPost, "AUTH", wrkAuth(side.token), 1)
		logf("%s: wrk POST against %s, %d connections, %s", t.name(benchVersus), side.name, o.concurrency, o.duration)
		if post[side.name], err = runWrk(ctx, dir, "post-"+side.name, script, side.base, o.concurrency, o.duration); err != nil {
			return err
		}
		if err := s.waitProjections(ctx); err != nil {
			return err
		}
	}
	get := map[string]wrkResult{}
	for _, side := range sides {
		ids, err := seedOver(ctx, s.client, side.base, side.token, 1000)
		if err != nil {
			return fmt.Errorf("%s: %w", side.name, err)
		}
		idsFile := filepath.Join(dir, "ids-"+side.name)
		if err := os.WriteFile(idsFile, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		if err := s.waitProjections(ctx); err != nil {
			return err
		}
		script := strings.NewReplacer("AUTH", wrkAuth(side.token), "IDS", idsFile).Replace(wrkGet)
		logf("%s: wrk GET against %s", t.name(benchVersus), side.name)
		if get[side.name], err = runWrk(ctx, dir, "get-"+side.name, script, side.base, o.concurrency, o.duration); err != nil {
			return err
		}
	}
	for _, m := range []struct {
		what, path string
		res        map[string]wrkResult
		bar        float64
	}{{"post", "POST /v1/leads", post, 0.8}, {"get", "GET /v1/leads/{id}", get, 0.9}} {
		peerName := t.name(benchVersus + "_" + m.what + "_peer")
		pr := wrkRow(peerName, t.backend, o, m.res["peer"],
			m.path+" on the plain CRUD peer (Echo + pgx, one statement per request, no token check), driven by wrk")
		emit(pr)
		r := wrkRow(t.name(benchVersus+"_"+m.what), t.backend, o, m.res["salesos"],
			m.path+" on SalesOS (RS256 bearer token, event store, read-your-writes), driven by wrk")
		r.against(peerName, pr.OpsPerSec)
		r.bar(fmt.Sprintf("ratio >= %.1f", m.bar), r.Ratio >= m.bar)
		emit(r)
	}
	return nil
}

func wrkRow(name, backend string, o *options, w wrkResult, note string) result {
	r := result{
		Bench: name, Backend: backend, Concurrency: o.concurrency,
		Ops: w.Requests - w.Non2xx - w.Errors, Errors: w.Non2xx + w.Errors, Seconds: float64(w.DurationUS) / 1e6,
		OpsPerSec: w.perSec(), P50ms: round(w.P50US/1000, 3), P99ms: round(w.P99US/1000, 3), MaxMs: round(w.MaxUS/1000, 3),
		Note: note,
	}
	return r
}
