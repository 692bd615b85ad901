package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/broker/store"
)

// testTimeout bounds one test's etcd calls; the whole package should stay
// well under a minute.
const testTimeout = 45 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testLogger writes warnings and errors from etcd to stderr, which `go
// test` shows only for failing packages or with -v.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration tier (real etcd): skipped with -short")
	}
}

// startEmbedded starts an embedded etcd on dir and stops it at cleanup.
func startEmbedded(t *testing.T, dir string) *store.Embedded {
	t.Helper()
	e, err := store.StartEmbedded(testCtx(t), store.EmbeddedOptions{
		DataDir:       dir,
		Logger:        testLogger(),
		UnsafeNoFsync: true,
	})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// newStore returns a Store over a fresh embedded etcd.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	integration(t)
	e := startEmbedded(t, filepath.Join(t.TempDir(), "etcd"))
	return store.New(e.Client(), "", store.WithLogger(testLogger()))
}

// recv returns the next event from ch or fails the test after a while.
func recv(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed unexpectedly")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	panic("unreachable")
}

// describe renders an event compactly for comparisons.
func describe(ev store.Event) string {
	if ev.Type == store.EventError {
		return fmt.Sprintf("ERROR %v", ev.Err)
	}
	last := ""
	if ev.LastInRevision {
		last = " last"
	}
	return fmt.Sprintf("%s %s=%q @%d%s", ev.Type, ev.KV.Key, ev.KV.Value, ev.Revision, last)
}

func mustPut(t *testing.T, s *store.Store, key, value string) int64 {
	t.Helper()
	rev, err := s.Put(testCtx(t), key, []byte(value))
	if err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
	return rev
}
