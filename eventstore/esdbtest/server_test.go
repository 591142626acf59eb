package esdbtest_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/salesos/salesos/eventstore/esdbtest"
)

// These tests drive the test server with the official client directly,
// for the behaviour the backend's tests do not reach.

func client(t *testing.T, connString string) *esdbclient.Client {
	t.Helper()
	cfg, err := esdbclient.ParseConnectionString(connString)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdbclient.NoopLogging()
	c, err := esdbclient.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func event(typ string) esdbclient.EventData {
	return esdbclient.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdbclient.ContentTypeJson, Data: []byte(`{}`)}
}

func collect(rs *esdbclient.ReadStream, err error) ([]*esdbclient.ResolvedEvent, error) {
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdbclient.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func TestAppendSemantics(t *testing.T) {
	srv := esdbtest.Start(t)
	c := client(t, srv.ConnString())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	e1, e2 := event("a"), event("b")
	r, err := c.AppendToStream(ctx, "s", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.NoStream{}}, e1, e2)
	if err != nil || r.NextExpectedVersion != 1 || r.CommitPosition == 0 {
		t.Fatalf("first append: %+v %v", r, err)
	}
	// The same events again (a retry after a lost answer): same result,
	// nothing written.
	again, err := c.AppendToStream(ctx, "s", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.NoStream{}}, e1, e2)
	if err != nil || *again != *r {
		t.Fatalf("idempotent retry: %+v %v, want %+v", again, err, r)
	}
	// Wrong expected versions are an append result, reported with the
	// current revision.
	_, err = c.AppendToStream(ctx, "s", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.Revision(0)}, event("c"))
	var e *esdbclient.Error
	if !errors.As(err, &e) || e.Code() != esdbclient.ErrorCodeWrongExpectedVersion || !strings.Contains(err.Error(), "but got '1'") {
		t.Fatalf("stale revision: %v", err)
	}
	_, err = c.AppendToStream(ctx, "missing", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.StreamExists{}}, event("c"))
	if !errors.As(err, &e) || e.Code() != esdbclient.ErrorCodeWrongExpectedVersion || !strings.Contains(err.Error(), "but got 'no_stream'") {
		t.Fatalf("stream_exists on a missing stream: %v", err)
	}

	evs, err := collect(c.ReadStream(ctx, "s", esdbclient.ReadStreamOptions{}, 10))
	if err != nil || len(evs) != 2 || evs[0].Event.EventID != e1.EventID || evs[1].Event.Position.Commit != r.CommitPosition {
		t.Fatalf("read stream: %d events, %v", len(evs), err)
	}
	if evs[0].Event.CreatedDate.IsZero() || evs[0].Event.ContentType != "application/json" {
		t.Fatalf("recorded metadata: %+v", evs[0].Event)
	}
	back, err := collect(c.ReadStream(ctx, "s", esdbclient.ReadStreamOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 1))
	if err != nil || len(back) != 1 || back[0].Event.EventNumber != 1 {
		t.Fatalf("read stream backwards: %+v %v", back, err)
	}
	_, err = collect(c.ReadStream(ctx, "missing", esdbclient.ReadStreamOptions{}, 10))
	if !errors.As(err, &e) || e.Code() != esdbclient.ErrorCodeResourceNotFound {
		t.Fatalf("read of a missing stream: %v", err)
	}
}

func TestAllPositions(t *testing.T) {
	srv := esdbtest.Start(t)
	c := client(t, srv.ConnString())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.AppendToStream(ctx, "s", esdbclient.AppendToStreamOptions{}, event("a"), event("b"), event("c")); err != nil {
		t.Fatal(err)
	}
	all, err := collect(c.ReadAll(ctx, esdbclient.ReadAllOptions{}, 100))
	if err != nil || len(all) != srv.EventCount() {
		t.Fatalf("read $all: %d events of %d, %v", len(all), srv.EventCount(), err)
	}
	for i, ev := range all {
		p := ev.Event.Position
		if p.Commit != p.Prepare || (i > 0 && p.Commit <= all[i-1].Event.Position.Commit+1) {
			t.Fatalf("position %d: %+v after %+v (want commit == prepare, sparse, increasing)", i, p, all[max(i-1, 0)].Event.Position)
		}
	}
	if !strings.HasPrefix(all[0].Event.EventType, "$") {
		t.Fatalf("a fresh server's log starts with system events, got %s", all[0].Event.EventType)
	}
	// Forwards from a position includes it; backwards excludes it.
	mid := all[len(all)-2].Event.Position
	fw, err := collect(c.ReadAll(ctx, esdbclient.ReadAllOptions{From: mid}, 10))
	if err != nil || len(fw) != 2 || fw[0].Event.Position != mid {
		t.Fatalf("forwards from %v: %d events, %v", mid, len(fw), err)
	}
	bw, err := collect(c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: mid}, 1))
	if err != nil || len(bw) != 1 || bw[0].Event.Position != all[len(all)-3].Event.Position {
		t.Fatalf("backwards from %v: %+v, %v", mid, bw, err)
	}
	// A position inside a record is refused.
	if _, err := collect(c.ReadAll(ctx, esdbclient.ReadAllOptions{From: esdbclient.Position{Commit: mid.Commit + 1, Prepare: mid.Commit + 1}}, 10)); err == nil {
		t.Fatal("read from a position inside a record succeeded")
	}
}

func TestSubscriptionMessages(t *testing.T) {
	srv := esdbtest.Start(t)
	c := client(t, srv.ConnString())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.AppendToStream(ctx, "s", esdbclient.AppendToStreamOptions{}, event("a")); err != nil {
		t.Fatal(err)
	}
	sub, err := c.SubscribeToAll(ctx, esdbclient.SubscribeToAllOptions{
		From: esdbclient.Start{}, Filter: esdbclient.ExcludeSystemEventsFilter(), MaxSearchWindow: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var kinds []string
	for len(kinds) == 0 || kinds[len(kinds)-1] != "caught-up" {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			t.Fatal(ev.SubscriptionDropped.Error)
		case ev.EventAppeared != nil:
			kinds = append(kinds, "event:"+ev.EventAppeared.Event.EventType)
		case ev.CheckPointReached != nil:
			kinds = append(kinds, "checkpoint")
		case ev.CaughtUp != nil:
			kinds = append(kinds, "caught-up")
		}
	}
	// Two system events, then "a": each considered event is a checkpoint
	// with a window of one.
	if got := strings.Join(kinds, " "); got != "checkpoint checkpoint event:a checkpoint caught-up" {
		t.Fatalf("catch-up messages: %s", got)
	}
	if _, err := c.AppendToStream(ctx, "s", esdbclient.AppendToStreamOptions{}, event("b")); err != nil {
		t.Fatal(err)
	}
	for {
		ev := sub.Recv()
		if ev.SubscriptionDropped != nil {
			t.Fatal(ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared != nil {
			if ev.EventAppeared.Event.EventType != "b" {
				t.Fatalf("live event %s", ev.EventAppeared.Event.EventType)
			}
			break
		}
	}
	// Stopping the server drops the subscription.
	srv.Stop()
	for {
		if ev := sub.Recv(); ev.SubscriptionDropped != nil {
			break
		}
	}
}

// Cluster connection strings (gossip seeds) discover the node through
// Gossip.Read.
func TestGossipDiscovery(t *testing.T) {
	srv := esdbtest.Start(t)
	c := client(t, "esdb://"+srv.Addr()+","+srv.Addr()+"?tls=false")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.AppendToStream(ctx, "s", esdbclient.AppendToStreamOptions{}, event("a")); err != nil {
		t.Fatal(err)
	}
	v, err := c.GetServerVersion()
	if err != nil || v.Major != 24 {
		t.Fatalf("server version: %+v %v", v, err)
	}
}
