// Subscriptions to $all or a stream: the catch-up, then live events as the
// log grows, with the confirmation, caught-up and checkpoint messages the
// client waits for.

package esdbtest

import (
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/status"
)

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
