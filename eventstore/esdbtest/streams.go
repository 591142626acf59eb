package esdbtest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"regexp"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type streamsService struct {
	streams.UnimplementedStreamsServer
	db *db
}

// ---- Append ----------------------------------------------------------------

type expectKind int

const (
	expectRevision expectKind = iota
	expectNoStream
	expectAny
	expectExists
)

type expectation struct {
	kind     expectKind
	revision uint64
}

// holds reports whether a stream whose last revision is cur (-1: no
// stream) meets the expectation.
func (e expectation) holds(cur int64) bool {
	switch e.kind {
	case expectRevision:
		return cur >= 0 && uint64(cur) == e.revision
	case expectNoStream:
		return cur < 0
	case expectExists:
		return cur >= 0
	default:
		return true
	}
}

func (s *streamsService) Append(srv streams.Streams_AppendServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "the first append message must carry the options")
	}
	stream := string(opts.GetStreamIdentifier().GetStreamName())
	if stream == "" {
		return status.Error(codes.InvalidArgument, "stream name is required")
	}
	var exp expectation
	switch r := opts.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Revision:
		exp = expectation{kind: expectRevision, revision: r.Revision}
	case *streams.AppendReq_Options_NoStream:
		exp = expectation{kind: expectNoStream}
	case *streams.AppendReq_Options_Any:
		exp = expectation{kind: expectAny}
	case *streams.AppendReq_Options_StreamExists:
		exp = expectation{kind: expectExists}
	default:
		return status.Error(codes.InvalidArgument, "expected stream revision is required")
	}
	var evs []*record
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		pm := req.GetProposedMessage()
		if pm == nil {
			return status.Error(codes.InvalidArgument, "expected a proposed message")
		}
		id, err := fromProtoUUID(pm.GetId())
		if err != nil {
			return status.Error(codes.InvalidArgument, "event id: "+err.Error())
		}
		md := pm.GetMetadata()
		typ, ok := md["type"]
		if !ok || typ == "" {
			return status.Error(codes.InvalidArgument, "required metadata property 'type' is missing")
		}
		ct, ok := md["content-type"]
		if !ok {
			return status.Error(codes.InvalidArgument, "required metadata property 'content-type' is missing")
		}
		evs = append(evs, &record{id: id, eventType: typ, contentType: ct, data: pm.GetData(), meta: pm.GetCustomMetadata()})
	}
	return srv.SendAndClose(s.db.append(stream, exp, evs))
}

func (d *db) append(stream string, exp expectation, evs []*record) *streams.AppendResp {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.streams[stream]
	cur := int64(len(st)) - 1
	// Idempotence, as on the real server: the same events sent again (a
	// client retrying after a lost answer) are acknowledged with the
	// original result instead of being written twice or failing.
	if last := idempotentReplay(st, exp, evs); last != nil {
		return appendSuccess(int64(last.revision), last)
	}
	if !exp.holds(cur) {
		return wrongExpectedVersion(exp, cur)
	}
	if len(evs) == 0 {
		return appendSuccess(cur, nil)
	}
	now := ticksNow()
	for _, r := range evs {
		r.created = now
	}
	d.write(stream, evs)
	return appendSuccess(int64(evs[len(evs)-1].revision), evs[len(evs)-1])
}

// idempotentReplay returns the last already-stored event if evs were
// written before, at the place the expectation points to.
func idempotentReplay(st []*record, exp expectation, evs []*record) *record {
	if len(evs) == 0 || len(st) == 0 {
		return nil
	}
	start := -1
	switch exp.kind {
	case expectRevision:
		start = int(exp.revision) + 1
	case expectNoStream:
		start = 0
	default:
		for i := len(st) - 1; i >= 0; i-- {
			if st[i].id == evs[0].id {
				start = i
				break
			}
		}
	}
	if start < 0 || start+len(evs) > len(st) {
		return nil
	}
	for i, e := range evs {
		if st[start+i].id != e.id {
			return nil
		}
	}
	return st[start+len(evs)-1]
}

func appendSuccess(cur int64, last *record) *streams.AppendResp {
	ok := &streams.AppendResp_Success{}
	if cur < 0 {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(cur)}
	}
	if last == nil {
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	} else {
		// The commit position of a write is the position of its last
		// event: once a reader has passed it, it has seen the whole write.
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: last.pos, PreparePosition: last.pos,
		}}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
}

func wrongExpectedVersion(exp expectation, cur int64) *streams.AppendResp {
	w := &streams.AppendResp_WrongExpectedVersion{}
	if cur < 0 {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(cur)}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(cur)}
	}
	switch exp.kind {
	case expectRevision:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: exp.revision}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: exp.revision}
	case expectNoStream:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	case expectExists:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// ---- Read ------------------------------------------------------------------

func (s *streamsService) Read(req *streams.ReadReq, srv streams.Streams_ReadServer) error {
	o := req.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "options are required")
	}
	if o.GetUuidOption() == nil {
		return status.Error(codes.InvalidArgument, "uuid_option is required")
	}
	r := &reader{db: s.db, srv: srv, stringIDs: o.GetUuidOption().GetString_() != nil}
	var err error
	if f := o.GetFilter(); f != nil {
		if o.GetAll() == nil {
			return status.Error(codes.InvalidArgument, "filters apply to $all only")
		}
		if r.filter, err = compileFilter(f); err != nil {
			return err
		}
	}
	backwards := o.GetReadDirection() == streams.ReadReq_Options_Backwards
	switch o.GetCountOption().(type) {
	case *streams.ReadReq_Options_Count:
		if so := o.GetStream(); so != nil {
			return r.readStream(so, backwards, o.GetCount())
		}
		if ao := o.GetAll(); ao != nil {
			return r.readAll(ao, backwards, o.GetCount())
		}
	case *streams.ReadReq_Options_Subscription:
		if backwards {
			return status.Error(codes.InvalidArgument, "subscriptions read forwards only")
		}
		s.db.subscriptions.Add(1)
		if so := o.GetStream(); so != nil {
			return r.subscribeStream(so)
		}
		if ao := o.GetAll(); ao != nil {
			return r.subscribeAll(ao, o.GetFilter())
		}
	}
	return status.Error(codes.InvalidArgument, "invalid combination of read options")
}

type reader struct {
	db        *db
	srv       streams.Streams_ReadServer
	stringIDs bool
	filter    *filter
}

func (r *reader) send(rec *record) error {
	id := &shared.UUID{}
	if r.stringIDs {
		id.Value = &shared.UUID_String_{String_: rec.id.String()}
	} else {
		id.Value = &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
			MostSignificantBits:  int64(binary.BigEndian.Uint64(rec.id[:8])),
			LeastSignificantBits: int64(binary.BigEndian.Uint64(rec.id[8:])),
		}}
	}
	return r.srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event: &streams.ReadResp_ReadEvent_RecordedEvent{
			Id:               id,
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(rec.stream)},
			StreamRevision:   rec.revision,
			PreparePosition:  rec.pos,
			CommitPosition:   rec.pos,
			Metadata:         rec.metadata(),
			CustomMetadata:   rec.meta,
			Data:             rec.data,
		},
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: rec.pos},
	}}})
}

func (r *reader) readStream(so *streams.ReadReq_Options_StreamOptions, backwards bool, count uint64) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	st, _ := r.db.streamSnapshot(name)
	if len(st) == 0 {
		return r.srv.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{
			StreamNotFound: &streams.ReadResp_StreamNotFound{StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)}},
		}})
	}
	n := uint64(len(st))
	if !backwards {
		var from uint64
		switch ro := so.GetRevisionOption().(type) {
		case *streams.ReadReq_Options_StreamOptions_Revision:
			from = ro.Revision
		case *streams.ReadReq_Options_StreamOptions_End:
			from = n
		}
		for i := from; i < n && count > 0; i, count = i+1, count-1 {
			if err := r.send(st[i]); err != nil {
				return err
			}
		}
		return nil
	}
	from := int64(n) - 1
	switch ro := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Revision:
		from = min(int64(ro.Revision), from)
	case *streams.ReadReq_Options_StreamOptions_Start:
		from = 0
	}
	for i := from; i >= 0 && count > 0; i, count = i-1, count-1 {
		if err := r.send(st[i]); err != nil {
			return err
		}
	}
	return nil
}

// allStart resolves an $all start to an index of log (the first record at
// or after the position), refusing positions inside a record.
func (r *reader) allStart(ao *streams.ReadReq_Options_AllOptions, log []*record) (int, error) {
	switch ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Start:
		return 0, nil
	case *streams.ReadReq_Options_AllOptions_End:
		return len(log), nil
	case *streams.ReadReq_Options_AllOptions_Position:
		p := ao.GetPosition()
		r.db.mu.Lock()
		ok := r.db.validPosition(p.GetCommitPosition())
		r.db.mu.Unlock()
		if !ok {
			return 0, status.Errorf(codes.InvalidArgument, "invalid position: %d/%d is not the position of a record", p.GetCommitPosition(), p.GetPreparePosition())
		}
		return firstAtOrAfter(log, p.GetCommitPosition()), nil
	}
	return 0, status.Error(codes.InvalidArgument, "an $all position, start or end is required")
}

func (r *reader) readAll(ao *streams.ReadReq_Options_AllOptions, backwards bool, count uint64) error {
	log, _ := r.db.snapshot()
	i, err := r.allStart(ao, log)
	if err != nil {
		return err
	}
	if !backwards {
		for ; i < len(log) && count > 0; i++ {
			if r.filter.match(log[i]) {
				if err := r.send(log[i]); err != nil {
					return err
				}
				count--
			}
		}
		return nil
	}
	// Backwards: strictly before the position; from the end, the last
	// record first; from the start, nothing.
	for i--; i >= 0 && count > 0; i-- {
		if r.filter.match(log[i]) {
			if err := r.send(log[i]); err != nil {
				return err
			}
			count--
		}
	}
	return nil
}

// confirm is the first message of every subscription.
func (r *reader) confirm() error {
	return r.srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{
		Confirmation: &streams.ReadResp_SubscriptionConfirmation{SubscriptionId: uuid.NewString()},
	}})
}

func (r *reader) caughtUp() error {
	return r.srv.Send(&streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}})
}

func (r *reader) checkpoint(pos uint64) error {
	return r.srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{
		Checkpoint: &streams.ReadResp_Checkpoint{CommitPosition: pos, PreparePosition: pos},
	}})
}

// wait blocks until the log changes or the call ends (client gone, or the
// server stopping).
func (r *reader) wait(changed <-chan struct{}) error {
	select {
	case <-changed:
		return nil
	case <-r.srv.Context().Done():
		return status.FromContextError(r.srv.Context().Err()).Err()
	}
}

func (r *reader) subscribeAll(ao *streams.ReadReq_Options_AllOptions, fo *streams.ReadReq_Options_FilterOptions) error {
	log, changed := r.db.snapshot()
	i, err := r.allStart(ao, log)
	if err != nil {
		return err
	}
	if err := r.confirm(); err != nil {
		return err
	}
	if p := ao.GetPosition(); p != nil {
		// Subscribing from a position means "after it".
		for i < len(log) && log[i].pos <= p.GetCommitPosition() {
			i++
		}
	}
	// Filtered subscriptions report progress every window × multiplier
	// considered events, so a client whose filter matches little can
	// still checkpoint.
	interval := 0
	if fo != nil {
		window := uint32(32)
		if m := fo.GetMax(); m > 0 {
			window = m
		}
		interval = int(window * max(fo.GetCheckpointIntervalMultiplier(), 1))
	}
	considered := 0
	live := false
	for {
		for ; i < len(log); i++ {
			rec := log[i]
			if r.filter.match(rec) {
				if err := r.send(rec); err != nil {
					return err
				}
			}
			if interval > 0 {
				if considered++; considered >= interval {
					considered = 0
					if err := r.checkpoint(rec.pos); err != nil {
						return err
					}
				}
			}
		}
		if !live {
			live = true
			if err := r.caughtUp(); err != nil {
				return err
			}
		}
		if err := r.wait(changed); err != nil {
			return err
		}
		log, changed = r.db.snapshot()
	}
}

func (r *reader) subscribeStream(so *streams.ReadReq_Options_StreamOptions) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	st, changed := r.db.streamSnapshot(name)
	var i uint64
	switch ro := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Revision:
		i = ro.Revision + 1 // after the revision
	case *streams.ReadReq_Options_StreamOptions_End:
		i = uint64(len(st))
	}
	if err := r.confirm(); err != nil {
		return err
	}
	live := false
	for {
		for ; i < uint64(len(st)); i++ {
			if err := r.send(st[i]); err != nil {
				return err
			}
		}
		if !live {
			live = true
			if err := r.caughtUp(); err != nil {
				return err
			}
		}
		if err := r.wait(changed); err != nil {
			return err
		}
		st, changed = r.db.streamSnapshot(name)
	}
}

// ---- filters ---------------------------------------------------------------

type filter struct {
	onType   bool // else on the stream name
	re       *regexp.Regexp
	prefixes []string
}

func compileFilter(f *streams.ReadReq_Options_FilterOptions) (*filter, error) {
	var out filter
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	if e := f.GetEventType(); e != nil {
		out.onType, expr = true, e
	} else if e := f.GetStreamIdentifier(); e != nil {
		expr = e
	} else {
		return nil, status.Error(codes.InvalidArgument, "a filter needs an event type or stream expression")
	}
	if expr.GetRegex() != "" {
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "filter regex: %v", err)
		}
		out.re = re
	} else {
		out.prefixes = expr.GetPrefix()
	}
	return &out, nil
}

// match: a nil filter matches everything.
func (f *filter) match(r *record) bool {
	if f == nil {
		return true
	}
	subject := r.stream
	if f.onType {
		subject = r.eventType
	}
	if f.re != nil {
		return f.re.MatchString(subject)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(subject, p) {
			return true
		}
	}
	return false
}

// ---- ids -------------------------------------------------------------------

func fromProtoUUID(id *shared.UUID) (uuid.UUID, error) {
	if s := id.GetStructured(); s != nil {
		var u uuid.UUID
		binary.BigEndian.PutUint64(u[:8], uint64(s.GetMostSignificantBits()))
		binary.BigEndian.PutUint64(u[8:], uint64(s.GetLeastSignificantBits()))
		return u, nil
	}
	if s := id.GetString_(); s != "" {
		return uuid.Parse(s)
	}
	return uuid.UUID{}, errors.New("missing")
}

// ---- server features and gossip ---------------------------------------------

type featuresService struct {
	serverfeatures.UnimplementedServerFeaturesServer
}

func (featuresService) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const svc = "event_store.client.streams.streams"
	return &serverfeatures.SupportedMethods{
		EventStoreServerVersion: "24.10.0",
		Methods: []*serverfeatures.SupportedMethod{
			{ServiceName: svc, MethodName: "read"},
			{ServiceName: svc, MethodName: "append"},
		},
	}, nil
}

type gossipService struct {
	gossip.UnimplementedGossipServer
	addr string
}

func (g *gossipService) Read(context.Context, *shared.Empty) (*gossip.ClusterInfo, error) {
	host, port := splitHostPort(g.addr)
	id := uuid.NewSHA1(uuid.NameSpaceURL, []byte("esdbtest://"+g.addr))
	return &gossip.ClusterInfo{Members: []*gossip.MemberInfo{{
		InstanceId: &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}},
		TimeStamp:  ticksNow(),
		State:      gossip.MemberInfo_Leader,
		IsAlive:    true,
		HttpEndPoint: &gossip.EndPoint{
			Address: host,
			Port:    port,
		},
	}}}, nil
}
