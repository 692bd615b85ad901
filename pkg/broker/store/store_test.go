package store_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/pkg/broker/store"
)

func keysOf(kvs []store.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key + "=" + string(kv.Value)
	}
	return out
}

func TestPutGetListDelete(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)

	if _, found, err := s.Get(ctx, "clusters/a"); err != nil || found {
		t.Fatalf("Get missing: found=%v err=%v", found, err)
	}
	r1 := mustPut(t, s, "clusters/a", "A1")
	r2 := mustPut(t, s, "clusters/b", "B")
	r3 := mustPut(t, s, "clusters/a", "A2")
	mustPut(t, s, "endpoints/a/gw1", "E")
	if !(r1 < r2 && r2 < r3) {
		t.Fatalf("revisions not increasing: %d %d %d", r1, r2, r3)
	}

	kv, found, err := s.Get(ctx, "clusters/a")
	if err != nil || !found {
		t.Fatalf("Get: found=%v err=%v", found, err)
	}
	if kv.Key != "clusters/a" || string(kv.Value) != "A2" || kv.CreateRevision != r1 || kv.ModRevision != r3 {
		t.Fatalf("Get = %+v, want clusters/a=A2 create %d mod %d", kv, r1, r3)
	}

	kvs, rev, err := s.List(ctx, "clusters/")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(kvs), []string{"clusters/a=A2", "clusters/b=B"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	cur, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev != cur {
		t.Fatalf("List revision %d, current revision %d", rev, cur)
	}
	all, _, err := s.List(ctx, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("List all = %v, %v; want 3 keys", keysOf(all), err)
	}

	// Another prefix on the same etcd sees none of it.
	other := store.New(s.Client(), "/other")
	if other.Prefix() != "/other/" {
		t.Fatalf("Prefix = %q", other.Prefix())
	}
	if kvs, _, err := other.List(ctx, ""); err != nil || len(kvs) != 0 {
		t.Fatalf("other prefix List = %v, %v", keysOf(kvs), err)
	}

	drev, existed, err := s.Delete(ctx, "clusters/b")
	if err != nil || !existed || drev <= cur {
		t.Fatalf("Delete = %d %v %v", drev, existed, err)
	}
	if _, existed, err := s.Delete(ctx, "clusters/b"); err != nil || existed {
		t.Fatalf("Delete again: existed=%v err=%v", existed, err)
	}
	_, n, err := s.DeletePrefix(ctx, "clusters/")
	if err != nil || n != 1 {
		t.Fatalf("DeletePrefix = %d, %v; want 1", n, err)
	}
	if kvs, _, err := s.List(ctx, ""); err != nil || !slices.Equal(keysOf(kvs), []string{"endpoints/a/gw1=E"}) {
		t.Fatalf("after deletes List = %v, %v", keysOf(kvs), err)
	}

	if _, _, err := s.Get(ctx, ""); err == nil {
		t.Fatal("Get with empty key: no error")
	}
}

func TestListPagesAtOneRevision(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	const n = 2500 // more than two pages
	var ops []store.Op
	for i := range n {
		ops = append(ops, store.OpPut(fmt.Sprintf("exports/c/ns/%05d", i), []byte("v")))
		if len(ops) == 100 || i == n-1 {
			if _, ok, err := s.Apply(ctx, ops, nil); err != nil || !ok {
				t.Fatalf("Apply: %v %v", ok, err)
			}
			ops = ops[:0]
		}
	}
	mustPut(t, s, "exportsX", "outside the prefix")
	kvs, rev, err := s.List(ctx, "exports/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != n {
		t.Fatalf("List returned %d keys, want %d", len(kvs), n)
	}
	for i, kv := range kvs {
		if want := fmt.Sprintf("exports/c/ns/%05d", i); kv.Key != want {
			t.Fatalf("key %d = %q, want %q", i, kv.Key, want)
		}
		if kv.ModRevision > rev {
			t.Fatalf("key %s at revision %d after the snapshot revision %d", kv.Key, kv.ModRevision, rev)
		}
	}
}

func TestCreateIsExclusive(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	const racers = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []int
		revs    = map[int64]bool{}
	)
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			rev, created, err := s.Create(ctx, "clusters/x", fmt.Appendf(nil, "racer-%d", i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
				return
			}
			if created {
				winners = append(winners, i)
				revs[rev] = true
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d racers created the key (%v), want exactly 1", len(winners), winners)
	}
	kv, _, err := s.Get(ctx, "clusters/x")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("racer-%d", winners[0]); string(kv.Value) != want || !revs[kv.ModRevision] {
		t.Fatalf("stored %q @%d, want the winner's %q", kv.Value, kv.ModRevision, want)
	}
}

func TestCompareAndSwap(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	rev, ok, err := s.CompareAndSwap(ctx, "globalnet/a", []byte("1"), 0)
	if err != nil || !ok {
		t.Fatalf("CAS on absent key with 0: %v %v", ok, err)
	}
	if _, ok, err := s.CompareAndSwap(ctx, "globalnet/a", []byte("x"), 0); err != nil || ok {
		t.Fatalf("CAS with 0 on existing key: ok=%v err=%v", ok, err)
	}
	if _, ok, err := s.CompareAndSwap(ctx, "globalnet/a", []byte("x"), rev-1); err != nil || ok {
		t.Fatalf("CAS with stale revision: ok=%v err=%v", ok, err)
	}
	rev2, ok, err := s.CompareAndSwap(ctx, "globalnet/a", []byte("2"), rev)
	if err != nil || !ok || rev2 <= rev {
		t.Fatalf("CAS with current revision: %d %v %v", rev2, ok, err)
	}
	kv, _, _ := s.Get(ctx, "globalnet/a")
	if string(kv.Value) != "2" || kv.ModRevision != rev2 {
		t.Fatalf("after CAS: %+v", kv)
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	s := newStore(t)
	ctx := testCtx(t)
	base := mustPut(t, s, "clusters/a", "A")
	mustPut(t, s, "exports/a/ns/old", "gone soon")
	mustPut(t, s, "exports/a/ns/old2", "gone soon")

	snapshot := func() []string {
		t.Helper()
		kvs, _, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(kvs)
	}
	before := snapshot()
	beforeRev, _ := s.Revision(ctx)

	failing := []struct {
		name  string
		ops   []store.Op
		conds []store.Cond
	}{
		{"create of an existing key", []store.Op{store.OpPut("endpoints/a/gw", []byte("E")), store.OpCreate("clusters/a", []byte("dup"))}, nil},
		{"absent condition fails", []store.Op{store.OpPut("endpoints/a/gw", []byte("E"))}, []store.Cond{store.IfAbsent("clusters/a")}},
		{"exists condition fails", []store.Op{store.OpPut("endpoints/a/gw", []byte("E"))}, []store.Cond{store.IfExists("clusters/nope")}},
		{"stale mod revision", []store.Op{store.OpPut("clusters/a", []byte("A2")), store.OpDeletePrefix("exports/a/")}, []store.Cond{store.IfModRevision("clusters/a", base-1)}},
		{"one of several conditions fails", []store.Op{store.OpDelete("clusters/a")}, []store.Cond{store.IfExists("clusters/a"), store.IfModRevision("clusters/a", base), store.IfAbsent("exports/a/ns/old")}},
	}
	for _, tc := range failing {
		t.Run(tc.name, func(t *testing.T) {
			rev, ok, err := s.Apply(ctx, tc.ops, tc.conds)
			if err != nil || ok {
				t.Fatalf("Apply = ok %v, err %v; want not applied", ok, err)
			}
			if rev != beforeRev {
				t.Fatalf("Apply returned revision %d, want current %d", rev, beforeRev)
			}
			if got := snapshot(); !slices.Equal(got, before) {
				t.Fatalf("store changed: %v, want %v", got, before)
			}
		})
	}

	rev, ok, err := s.Apply(ctx, []store.Op{
		store.OpPut("clusters/a", []byte("A2")),
		store.OpCreate("globalnet/a", []byte("G")),
		store.OpDeletePrefix("exports/a/"),
		store.OpDelete("tokens/none"),
	}, []store.Cond{store.IfModRevision("clusters/a", base), store.IfAbsent("tokens/t1"), store.IfModRevision("clusters/none", 0)})
	if err != nil || !ok {
		t.Fatalf("Apply = %v %v; want applied", ok, err)
	}
	if got, want := snapshot(), []string{"clusters/a=A2", "globalnet/a=G"}; !slices.Equal(got, want) {
		t.Fatalf("after Apply: %v, want %v", got, want)
	}
	for _, k := range []string{"clusters/a", "globalnet/a"} {
		if kv, _, _ := s.Get(ctx, k); kv.ModRevision != rev {
			t.Fatalf("%s at revision %d, want the transaction's %d", k, kv.ModRevision, rev)
		}
	}

	for _, bad := range [][]store.Op{{{}}, {store.OpPut("", nil)}} {
		if _, _, err := s.Apply(ctx, bad, nil); err == nil {
			t.Errorf("Apply(%v): no error", bad)
		}
	}
	if _, _, err := s.Apply(ctx, nil, []store.Cond{{}}); err == nil {
		t.Error("Apply with zero Cond: no error")
	}
	_, _, err = s.Apply(ctx, []store.Op{store.OpPut("k", nil), store.OpDelete("k")}, nil)
	if err == nil {
		t.Error("Apply with two ops on one key: no error")
	} else if !strings.Contains(err.Error(), "apply [put k, delete k]") {
		t.Errorf("Apply error does not name the op: %v", err)
	}
}
