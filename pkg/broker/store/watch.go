package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventType says what an Event reports.
type EventType uint8

const (
	// EventPut: a key was created or updated.
	EventPut EventType = iota + 1
	// EventDelete: a key was removed.
	EventDelete
	// EventError: the watch ended; Err says why. It is the last event.
	EventError
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	case EventError:
		return "ERROR"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is one change seen by Watch, or the terminal error of a watch.
type Event struct {
	Type EventType
	// KV is the key after the change. For EventDelete, KV.ModRevision is
	// the revision of the delete and KV.Value and KV.CreateRevision are
	// those of the removed version when etcd still had it.
	KV KV
	// Prev is the version before the change, nil when there was none (a
	// create) or etcd no longer had it.
	Prev *KV
	// Revision is the revision of the change. For an EventError caused by
	// compaction, it is the compact revision; otherwise 0 for EventError.
	Revision int64
	// LastInRevision is true on the last event of its revision. One
	// revision is one transaction and may change several keys; a consumer
	// that checkpoints a revision to resume from should do so only on an
	// event with LastInRevision set, or it may skip the rest of that
	// transaction on resume.
	LastInRevision bool
	// Err is set for EventError. errors.Is(Err, ErrCompacted) means the
	// revision to resume after is gone: List, then Watch from the list's
	// revision.
	Err error
}

// Watch follows changes to keys starting with keyPrefix ("" watches the
// whole Store). It delivers, in revision order, every change after
// fromRevision, which is the last revision the caller has seen (the
// revision of a List, or the Revision of the last event it handled with
// LastInRevision set). fromRevision 0 means from now on.
//
// If history after fromRevision has been compacted, the watch delivers
// one EventError whose Err matches ErrCompacted (a *CompactedError). If
// etcd ends the watch for any other reason (for example the member the
// client talks to has lost its leader for several election timeouts), it
// delivers one EventError with that error. After an EventError the
// channel is closed; the caller resumes with a new Watch. Transient
// connection failures are retried by the etcd client without a gap.
//
// The channel is closed when ctx ends; the caller must keep receiving
// until then or cancel ctx.
func (s *Store) Watch(ctx context.Context, keyPrefix string, fromRevision int64) (<-chan Event, error) {
	if fromRevision < 0 {
		return nil, fmt.Errorf("store: watch %q: negative revision %d", keyPrefix, fromRevision)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: watch %q: %w", keyPrefix, err)
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if fromRevision > 0 {
		opts = append(opts, clientv3.WithRev(fromRevision+1))
	}
	// WithRequireLeader: a member cut off from its cluster ends the watch
	// instead of silently delivering nothing.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, s.abs(keyPrefix), opts...)
	out := make(chan Event)
	go func() {
		defer close(out)
		defer cancel()
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		fail := func(err error, rev int64) {
			s.log.Debug("store watch ended", "prefix", keyPrefix, "err", err)
			send(Event{Type: EventError, Revision: rev, Err: err})
		}
		last := fromRevision
		for resp := range wch {
			if ctx.Err() != nil {
				return
			}
			if resp.CompactRevision != 0 {
				fail(&CompactedError{Requested: last, CompactRevision: resp.CompactRevision}, resp.CompactRevision)
				return
			}
			if err := resp.Err(); err != nil {
				fail(fmt.Errorf("store: watch %q after revision %d: %w", keyPrefix, last, err), 0)
				return
			}
			for i, ev := range resp.Events {
				e := s.event(ev)
				e.LastInRevision = i == len(resp.Events)-1 || resp.Events[i+1].Kv.ModRevision != e.Revision
				if !send(e) {
					return
				}
				last = e.Revision
			}
		}
		if ctx.Err() == nil {
			fail(fmt.Errorf("store: watch %q after revision %d: %w", keyPrefix, last, errWatchClosed), 0)
		}
	}()
	return out, nil
}

var errWatchClosed = errors.New("watch channel closed by the etcd client")

func (s *Store) event(ev *clientv3.Event) Event {
	e := Event{KV: s.kv(ev.Kv), Revision: ev.Kv.ModRevision}
	if ev.PrevKv != nil {
		p := s.kv(ev.PrevKv)
		e.Prev = &p
	}
	switch ev.Type {
	case mvccpb.PUT:
		e.Type = EventPut
	case mvccpb.DELETE:
		e.Type = EventDelete
		if e.Prev != nil {
			e.KV.Value = e.Prev.Value
			e.KV.CreateRevision = e.Prev.CreateRevision
		}
	}
	return e
}
