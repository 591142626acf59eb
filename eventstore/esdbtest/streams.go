package esdbtest

import (
	"encoding/binary"
	"errors"

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
