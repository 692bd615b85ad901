package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/pkg/broker/store"
)

// TestExternalClusterSurvivesLeaderLoss runs the Store against a real
// three-member etcd cluster, kills the leader, and checks that reads,
// writes and an open watch keep working through the two survivors.
func TestExternalClusterSurvivesLeaderLoss(t *testing.T) {
	integration(t)
	ctx := testCtx(t)
	startedAt := time.Now()
	ec := etcdtest.Start(t)
	t.Logf("cluster up in %v", time.Since(startedAt).Round(time.Millisecond))

	cli, err := store.Connect(ctx, store.ConnectOptions{Endpoints: ec.Endpoints(), DialTimeout: 5 * time.Second, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s := store.New(cli, "/weft-ext/")

	mustPut(t, s, "clusters/seed", "s")
	_, rev0, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	// A watcher following the documented contract: on a terminal error
	// (other than compaction), watch again from the last complete revision.
	type seen struct {
		key string
		rev int64
	}
	events := make(chan seen, 100)
	resumes := make(chan error, 100)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		last := rev0
		for wctx.Err() == nil {
			ch, err := s.Watch(wctx, "", last)
			if err != nil {
				return
			}
			for ev := range ch {
				if ev.Type == store.EventError {
					select {
					case resumes <- ev.Err:
					default:
					}
					if errors.Is(ev.Err, store.ErrCompacted) {
						return
					}
					break
				}
				select {
				case events <- seen{ev.KV.Key, ev.Revision}:
				case <-wctx.Done():
					return
				}
				if ev.LastInRevision {
					last = ev.Revision
				}
			}
		}
	}()
	var want []seen
	expect := func(from int) {
		t.Helper()
		for _, w := range want[from:] {
			select {
			case got := <-events:
				if got != w {
					t.Fatalf("watch delivered %+v, want %+v", got, w)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("watch did not deliver %+v within 15s", w)
			}
		}
	}

	for i := range 5 {
		k := fmt.Sprintf("endpoints/c/before-%d", i)
		want = append(want, seen{k, mustPut(t, s, k, "v")})
	}
	expect(0)

	leader, err := ec.Leader()
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	leader.Kill()
	t.Logf("killed leader %s (%s)", leader.Name, leader.ClientURL)

	// Writes: the first may have to wait for a new leader. Create with a
	// fresh key per write makes a retry after an ambiguous failure (the
	// write may have committed) safe: it then finds the key and its
	// revision.
	n := len(want)
	write := func(k string, within time.Duration) int {
		return etcdtest.Retry(t, "write "+k, within, func(ctx context.Context) error {
			rev, created, err := s.Create(ctx, k, []byte("v"))
			if err != nil {
				return err
			}
			if !created {
				kv, _, err := s.Get(ctx, k)
				if err != nil {
					return err
				}
				rev = kv.ModRevision
			}
			want = append(want, seen{k, rev})
			return nil
		})
	}
	failures := write("endpoints/c/after-0", 20*time.Second)
	t.Logf("first write after leader loss: %v, %d failed attempts", time.Since(killedAt).Round(time.Millisecond), failures)
	for i := 1; i < 10; i++ {
		if f := write(fmt.Sprintf("endpoints/c/after-%d", i), 10*time.Second); f > 0 {
			t.Logf("write %d: %d failed attempts", i, f)
		}
	}
	// A transaction too.
	rev, ok, err := s.Apply(ctx, []store.Op{store.OpCreate("clusters/new", []byte("n"))}, []store.Cond{store.IfExists("clusters/seed")})
	if err != nil || !ok {
		t.Fatalf("Apply after leader loss: %v %v", ok, err)
	}
	want = append(want, seen{"clusters/new", rev})

	// Reads see everything.
	kvs, _, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1+len(want) {
		t.Fatalf("List after leader loss: %d keys, want %d: %v", len(kvs), 1+len(want), keysOf(kvs))
	}
	if kv, found, err := s.Get(ctx, "endpoints/c/before-0"); err != nil || !found || string(kv.Value) != "v" {
		t.Fatalf("Get after leader loss: %+v %v %v", kv, found, err)
	}

	// The watch delivered every change, in order, exactly once.
	expect(n)
	select {
	case extra := <-events:
		t.Fatalf("unexpected extra event %+v", extra)
	default:
	}
	for len(resumes) > 0 {
		t.Logf("watch was resumed after: %v", <-resumes)
	}
	if _, err := ec.Leader(); err != nil {
		t.Fatalf("survivors: %v", err)
	}
}
