// Package esdbtest is an in-process EventStoreDB test double: a gRPC server,
// written in Go on the service definitions and generated stubs that ship in
// the official client module (github.com/EventStore/EventStore-Client-Go/v4,
// protos/streams, protos/serverfeatures, protos/gossip), that the official
// client talks to exactly as it talks to a real node.
//
// It exists because CI cannot run a real EventStoreDB. It is TEST SUPPORT
// ONLY: nothing outside _test.go files may import it, and `serve` never
// wires it in.
//
// What it does, modelled on the real server (v20.10 to v24.x gRPC API):
//   - Streams.Append with expected-revision semantics (exact revision,
//     no_stream, any, stream_exists); a wrong expected version is an
//     AppendResp.wrong_expected_version result, never a gRPC error; appends
//     are idempotent by event id like the real server's (re-sending the same
//     events after an ambiguous failure returns the original result).
//   - Streams.Read, plain reads of a stream (forwards/backwards, from a
//     revision, start or end; stream_not_found for a stream without events)
//     and of $all (forwards/backwards, from a position, start or end,
//     optional filter). Plain reads only ever send `event` and
//     `stream_not_found` messages, as the client requires.
//   - Streams.Read as a catch-up subscription, to $all (optionally filtered
//     by event type or stream name, regex or prefixes, with the
//     max-search-window/checkpoint-interval checkpoints) or to one stream:
//     `confirmation` first, then the stored events, then `caught_up`, then
//     live events. Starting from a position or revision is exclusive, as on
//     the real server.
//   - $all positions are log positions like the real transaction file's:
//     sparse, growing with the size of each record, commit == prepare ==
//     the event's own record position for every event (what the real
//     server reports for events written through gRPC appends). Reading or
//     subscribing to $all from a position inside a record fails with
//     InvalidArgument (a subscription before its confirmation), as the real
//     server refuses invalid positions.
//   - Every recorded event carries metadata "type", "content-type" and
//     "created" (.NET ticks since the Unix epoch, as a decimal string; the
//     client exits the process without it).
//   - A fresh server already holds system events ($settings, $stats-...),
//     like a real node's log, so filtering is always exercised; more can be
//     added with AppendSystemEvent.
//   - ServerFeatures.GetSupportedMethods (version 24.10.0, read and append)
//     and Gossip.Read (this node as the only, leader member), so cluster and
//     discovery connection strings work too.
//   - Keepalive: the client's pings are allowed (MinTime 5s, without streams).
//   - Stop and Restart (same port, same data) for reconnect tests.
//
// What it does NOT cover:
//   - persistence beyond the process, scavenging, stream metadata ($maxAge,
//     $maxCount, $tb, ACLs), truncation and soft or hard deletes (Delete,
//     Tombstone and BatchAppend answer Unimplemented);
//   - authentication, authorisation and TLS (insecure mode only);
//   - clustering, leader election, follower reads, not-leader redirects;
//   - projections, link events and resolveLinkTos, $ce/$et streams;
//   - persistent subscriptions, the operations, users and monitoring
//     services;
//   - the live-buffer overflow and fell_behind behaviour of slow
//     subscribers (a slow reader just applies gRPC flow control);
//   - size limits (max append size, max record size).
package esdbtest

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Server is a running (or stopped) test server. Its data lives as long as
// the value, across Stop and Restart.
type Server struct {
	t    testing.TB
	db   *db
	addr string

	mu   sync.Mutex
	grpc *grpc.Server
	done chan struct{}
}

// Start starts a server on a free port of 127.0.0.1. It is stopped when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("esdbtest: listen: %v", err)
	}
	s := &Server{t: t, db: newDB(), addr: lis.Addr().String()}
	s.serve(lis)
	t.Cleanup(s.Stop)
	return s
}

// Listen starts a server outside a test (the benchmark program uses it);
// the caller stops it with Stop. Restart is for tests only.
func Listen() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("esdbtest: listen: %w", err)
	}
	s := &Server{db: newDB(), addr: lis.Addr().String()}
	s.serve(lis)
	return s, nil
}

// ConnString is the connection string of the server:
// esdb://127.0.0.1:<port>?tls=false.
func (s *Server) ConnString() string { return "esdb://" + s.addr + "?tls=false" }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Stop stops the server like a crash would: listeners and connections are
// closed and every running call (subscriptions included) fails on the
// client side. The data is kept for Restart. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	g, done := s.grpc, s.done
	s.grpc, s.done = nil, nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	g.Stop()
	<-done
}

// Restart stops the server if it runs and starts it again on the same port
// with the same data. It fails the test if the port cannot be bound again,
// so call it from the test's goroutine. Starting a server late is
// Start, Stop, then Restart when it should come up.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var lis net.Listener
	var err error
	// The port was ours a moment ago; binding it again can race with the
	// kernel releasing it, so retry briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err = net.Listen("tcp", s.addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		<-time.After(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("esdbtest: restart on %s: %v", s.addr, err)
	}
	s.serve(lis)
}

// Running reports whether the server accepts connections.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grpc != nil
}

func (s *Server) serve(lis net.Listener) {
	g := grpc.NewServer(
		// The client pings every 10s by default, also without active
		// calls; grpc-go's default policy (5 minutes, streams only) would
		// answer with GOAWAY ENHANCE_YOUR_CALM.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(16*1024*1024),
	)
	streams.RegisterStreamsServer(g, &streamsService{db: s.db})
	serverfeatures.RegisterServerFeaturesServer(g, &featuresService{})
	gossip.RegisterGossipServer(g, &gossipService{addr: s.addr})
	done := make(chan struct{})
	s.mu.Lock()
	s.grpc, s.done = g, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
}

// AppendSystemEvent writes an event the way the server itself writes
// system events (stats, settings, projections' bookkeeping...), whether or
// not the server is running. Use a stream or type starting with "$" to
// check that readers skip system events.
func (s *Server) AppendSystemEvent(stream, eventType string) {
	s.db.appendSystem(stream, eventType, []byte(`{}`))
}

// Head is the position of the last record in the log, system events
// included (0 when the log is empty, which it never is after Start).
func (s *Server) Head() uint64 {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	if len(s.db.log) == 0 {
		return 0
	}
	return s.db.log[len(s.db.log)-1].pos
}

// EventCount is the number of events in the log, system events included.
func (s *Server) EventCount() int {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	return len(s.db.log)
}

func splitHostPort(addr string) (string, uint32) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.ParseUint(port, 10, 16)
	return host, uint32(p)
}

// Subscriptions is the number of subscription calls the server has
// accepted since Start, across restarts: a client that resubscribes after
// a restart makes it grow.
func (s *Server) Subscriptions() int { return int(s.db.subscriptions.Load()) }
