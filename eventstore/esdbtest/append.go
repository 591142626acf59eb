// Streams.Append: expected revisions, idempotent replays of events already
// written, and the wrong-expected-version result the client expects.

package esdbtest

import (
	"errors"
	"io"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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
