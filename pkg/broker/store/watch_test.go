package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/weftnet/weft/pkg/broker/store"
)

func TestWatchDeliversChangesInOrder(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	mustPut(t, s, "clusters/a", "1")
	_, rev0, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Watch(ctx, "", rev0)
	if err != nil {
		t.Fatal(err)
	}
	endpoints, err := s.Watch(ctx, "endpoints/", rev0)
	if err != nil {
		t.Fatal(err)
	}

	r1 := mustPut(t, s, "clusters/b", "1")
	r2 := mustPut(t, s, "clusters/a", "2")
	r3, ok, err := s.Apply(ctx, []store.Op{
		store.OpPut("endpoints/a/g1", []byte("e1")),
		store.OpPut("endpoints/a/g2", []byte("e2")),
		store.OpDelete("clusters/b"),
	}, nil)
	if err != nil || !ok {
		t.Fatalf("Apply: %v %v", ok, err)
	}
	r4, _, err := s.Delete(ctx, "clusters/a")
	if err != nil {
		t.Fatal(err)
	}
	// Outside the Store's prefix: not seen.
	if _, err := store.New(s.Client(), "/elsewhere/").Put(ctx, "clusters/z", nil); err != nil {
		t.Fatal(err)
	}
	r5 := mustPut(t, s, "endpoints/a/g1", "e1b")

	want := []string{
		fmt.Sprintf(`PUT clusters/b="1" @%d last`, r1),
		fmt.Sprintf(`PUT clusters/a="2" @%d last`, r2),
		fmt.Sprintf(`PUT endpoints/a/g1="e1" @%d`, r3),
		fmt.Sprintf(`PUT endpoints/a/g2="e2" @%d`, r3),
		fmt.Sprintf(`DELETE clusters/b="1" @%d last`, r3),
		fmt.Sprintf(`DELETE clusters/a="2" @%d last`, r4),
		fmt.Sprintf(`PUT endpoints/a/g1="e1b" @%d last`, r5),
	}
	var got []store.Event
	for range want {
		got = append(got, recv(t, all))
	}
	if d := diffEvents(got, want); d != "" {
		t.Fatal(d)
	}
	// Previous versions are attached.
	if p := got[1].Prev; p == nil || string(p.Value) != "1" {
		t.Errorf("put clusters/a: Prev = %+v, want value 1", p)
	}
	if p := got[0].Prev; p != nil {
		t.Errorf("create clusters/b: Prev = %+v, want nil", p)
	}
	if kv := got[5].KV; kv.ModRevision != r4 || kv.CreateRevision == 0 || got[5].Prev == nil {
		t.Errorf("delete clusters/a: KV %+v Prev %+v", kv, got[5].Prev)
	}

	// A narrower prefix sees only its keys, with the same revisions.
	wantEndpoints := []string{
		fmt.Sprintf(`PUT endpoints/a/g1="e1" @%d`, r3),
		fmt.Sprintf(`PUT endpoints/a/g2="e2" @%d last`, r3),
		fmt.Sprintf(`PUT endpoints/a/g1="e1b" @%d last`, r5),
	}
	got = got[:0]
	for range wantEndpoints {
		got = append(got, recv(t, endpoints))
	}
	if d := diffEvents(got, wantEndpoints); d != "" {
		t.Fatal(d)
	}
}

func diffEvents(got []store.Event, want []string) string {
	g := make([]string, len(got))
	for i, ev := range got {
		g[i] = describe(ev)
	}
	if slices.Equal(g, want) {
		return ""
	}
	return fmt.Sprintf("events:\n  got  %q\n  want %q", g, want)
}

func TestWatchEndsWithContext(t *testing.T) {
	s := newStore(t)
	if _, err := s.Watch(testCtx(t), "", -1); err == nil {
		t.Fatal("Watch with negative revision: no error")
	}
	rev := mustPut(t, s, "k", "v")
	ctx, cancel := context.WithCancel(testCtx(t))
	ch, err := s.Watch(ctx, "", rev-1)
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, ch); ev.Type != store.EventPut || ev.Revision != rev {
		t.Fatalf("got %s", describe(ev))
	}
	cancel()
	for ev := range ch {
		t.Fatalf("after cancel: got %s, want the channel closed", describe(ev))
	}
}

// TestWatchResumesWithoutGapsOrRepeats restarts a watcher many times while
// a writer keeps writing single keys and multi-key transactions. The
// consumer checkpoints only complete revisions, as a crashing consumer
// would, and drops what it saw after the checkpoint on every restart.
// Together the watches must deliver every change exactly once, in order.
func TestWatchResumesWithoutGapsOrRepeats(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	_, start, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	type change struct {
		rev int64
		key string
	}
	const steps = 150
	writerDone := make(chan []change, 1)
	go func() {
		var changes []change
		defer func() { writerDone <- changes }()
		for i := range steps {
			if i%5 == 4 {
				keys := []string{fmt.Sprintf("t/%03d/a", i), fmt.Sprintf("t/%03d/b", i), fmt.Sprintf("t/%03d/c", i)}
				var ops []store.Op
				for _, k := range keys {
					ops = append(ops, store.OpPut(k, []byte("v")))
				}
				rev, _, err := s.Apply(ctx, ops, nil)
				if err != nil {
					t.Errorf("writer: %v", err)
					return
				}
				for _, k := range keys {
					changes = append(changes, change{rev, k})
				}
				continue
			}
			k := fmt.Sprintf("k/%03d", i)
			rev, err := s.Put(ctx, k, []byte("v"))
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			changes = append(changes, change{rev, k})
		}
	}()

	var (
		committed  []change
		checkpoint = start
		restarts   = 0
		expected   []change
	)
	// Restart after a varying number of events, so restarts land both
	// inside and between transactions.
	budgets := []int{7, 11, 2, 13, 5, 17, 3}
	for expected == nil || len(committed) < len(expected) {
		wctx, cancel := context.WithCancel(ctx)
		ch, err := s.Watch(wctx, "", checkpoint)
		if err != nil {
			t.Fatal(err)
		}
		var pending []change
		for budget := budgets[restarts%len(budgets)]; budget > 0; budget-- {
			var ev store.Event
			select {
			case e, ok := <-ch:
				if !ok {
					t.Fatalf("watch channel closed after %d changes", len(committed))
				}
				ev = e
			case changes := <-writerDone:
				expected = changes
				budget++ // keep reading
				continue
			}
			if ev.Type == store.EventError {
				t.Fatalf("watch ended: %v", ev.Err)
			}
			pending = append(pending, change{ev.Revision, ev.KV.Key})
			if ev.LastInRevision {
				committed = append(committed, pending...)
				pending = pending[:0]
				checkpoint = ev.Revision
			}
			if expected != nil && len(committed) == len(expected) {
				break
			}
		}
		cancel()
		restarts++
		if ctx.Err() != nil {
			t.Fatalf("timed out after %d restarts with %d changes", restarts, len(committed))
		}
	}
	if len(committed) != len(expected) {
		t.Fatalf("got %d changes, want %d", len(committed), len(expected))
	}
	for i := range expected {
		if committed[i] != expected[i] {
			t.Fatalf("change %d = %+v, want %+v (after %d restarts)", i, committed[i], expected[i], restarts)
		}
	}
	t.Logf("%d changes over %d watch restarts", len(committed), restarts)
}

func TestWatchCompactedThenListAndResume(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	r1 := mustPut(t, s, "k/1", "1")
	for i := 2; i <= 5; i++ {
		mustPut(t, s, fmt.Sprintf("k/%d", i), "v")
	}
	mustPut(t, s, "k/1", "1b")
	compactAt, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, compactAt); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, compactAt); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("second Compact: %v, want ErrCompacted", err)
	}

	ch, err := s.Watch(ctx, "k/", r1)
	if err != nil {
		t.Fatal(err)
	}
	ev := recv(t, ch)
	if ev.Type != store.EventError || !errors.Is(ev.Err, store.ErrCompacted) {
		t.Fatalf("got %s, want ErrCompacted", describe(ev))
	}
	var ce *store.CompactedError
	if !errors.As(ev.Err, &ce) || ce.CompactRevision != compactAt || ce.Requested != r1 || ev.Revision != compactAt {
		t.Fatalf("compacted event %+v (err %#v), want compact revision %d after %d", ev, ce, compactAt, r1)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed after the terminal event")
	}

	// Fall back to a snapshot and resume from its revision.
	kvs, rev, err := s.List(ctx, "k/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 5 || string(kvs[0].Value) != "1b" || rev < compactAt {
		t.Fatalf("List after compaction: %v @%d", keysOf(kvs), rev)
	}
	ch, err = s.Watch(ctx, "k/", rev)
	if err != nil {
		t.Fatal(err)
	}
	r6 := mustPut(t, s, "k/6", "6")
	if ev := recv(t, ch); describe(ev) != fmt.Sprintf(`PUT k/6="6" @%d last`, r6) {
		t.Fatalf("after resume: %s", describe(ev))
	}
}
