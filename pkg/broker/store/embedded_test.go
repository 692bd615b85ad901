package store_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/broker/store"
)

// syncBuffer is a bytes.Buffer safe for etcd's concurrent loggers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestEmbeddedRestartKeepsData stops the embedded etcd and starts it again
// on the same data dir (on new ports): data and history survive and
// revisions keep increasing.
func TestEmbeddedRestartKeepsData(t *testing.T) {
	integration(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "etcd")

	var logs syncBuffer
	e1, err := store.StartEmbedded(ctx, store.EmbeddedOptions{
		DataDir:  dir,
		Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LogLevel: slog.LevelInfo,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e1.Endpoint(), "http://127.0.0.1:") {
		t.Errorf("Endpoint = %q, want loopback", e1.Endpoint())
	}
	s1 := store.New(e1.Client(), "")
	r0, err := s1.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rA := mustPut(t, s1, "clusters/a", "A")
	if _, created, err := s1.Create(ctx, "tokens/t1", []byte("T")); err != nil || !created {
		t.Fatalf("Create: %v %v", created, err)
	}
	if _, _, err := s1.Delete(ctx, "tokens/t1"); err != nil {
		t.Fatal(err)
	}
	rLast := mustPut(t, s1, "clusters/b", "B")
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// etcd's own logging went through the injected slog logger.
	if l := logs.String(); !strings.Contains(l, "level=INFO") || !strings.Contains(l, dir) {
		t.Errorf("no etcd info records in the injected logger; got:\n%.2000s", l)
	}

	e2 := startEmbedded(t, dir)
	s2 := store.New(e2.Client(), "")
	kv, found, err := s2.Get(ctx, "clusters/a")
	if err != nil || !found || string(kv.Value) != "A" || kv.CreateRevision != rA {
		t.Fatalf("after restart Get = %+v found=%v err=%v", kv, found, err)
	}
	kvs, rev, err := s2.List(ctx, "")
	if err != nil || len(kvs) != 2 || rev != rLast {
		t.Fatalf("after restart List = %v @%d (%v), want 2 keys @%d", keysOf(kvs), rev, err, rLast)
	}
	if r := mustPut(t, s2, "clusters/c", "C"); r != rLast+1 {
		t.Fatalf("revision after restart = %d, want %d", r, rLast+1)
	}
	// The same code path works through Connect to the embedded endpoint.
	cli, err := store.Connect(ctx, store.ConnectOptions{Endpoints: []string{e2.Endpoint()}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if kv, found, err := store.New(cli, "/weft/").Get(ctx, "clusters/b"); err != nil || !found || string(kv.Value) != "B" {
		t.Fatalf("Get through Connect = %+v %v %v", kv, found, err)
	}

	// History survives too: a watcher can resume from before the restart.
	ch, err := s2.Watch(ctx, "", r0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 5 {
		ev := recv(t, ch)
		got = append(got, fmt.Sprintf("%s %s", ev.Type, ev.KV.Key))
	}
	want := "[PUT clusters/a PUT tokens/t1 DELETE tokens/t1 PUT clusters/b PUT clusters/c]"
	if fmt.Sprint(got) != want {
		t.Fatalf("history after restart: %v, want %v", got, want)
	}
}

func TestStartEmbeddedErrors(t *testing.T) {
	integration(t)
	ctx := testCtx(t)
	if _, err := store.StartEmbedded(ctx, store.EmbeddedOptions{}); err == nil {
		t.Fatal("no data dir: no error")
	}

	// A port the caller chose that is taken: a clear error, no retries.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	peer, err := store.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "etcd")
	_, err = store.StartEmbedded(ctx, store.EmbeddedOptions{DataDir: dir, ClientPort: taken, PeerPort: peer, Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("taken port: err = %v", err)
	}
}

func TestConnectErrors(t *testing.T) {
	integration(t)
	ctx := testCtx(t)
	if _, err := store.Connect(ctx, store.ConnectOptions{}); err == nil {
		t.Fatal("no endpoints: no error")
	}
	port, err := store.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ep := fmt.Sprintf("http://127.0.0.1:%d", port)
	start := time.Now()
	_, err = store.Connect(ctx, store.ConnectOptions{Endpoints: []string{ep}, DialTimeout: 300 * time.Millisecond, Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), ep) {
		t.Fatalf("nothing listening: err = %v, want an error naming %s", err, ep)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Connect took %v with a 300ms dial timeout", d)
	}
}
