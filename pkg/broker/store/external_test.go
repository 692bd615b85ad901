package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftnet/weft/pkg/broker/store"
)

// etcdBinary finds the etcd that hack/build-assets.sh builds: in
// $WEFT_ASSETS or $KUBEBUILDER_ASSETS, else under .cache/assets/ at the
// repository root.
func etcdBinary(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, env := range []string{"WEFT_ASSETS", "KUBEBUILDER_ASSETS"} {
		if d := os.Getenv(env); d != "" {
			p := filepath.Join(d, "etcd")
			if isExecutable(p) {
				return p
			}
			tried = append(tried, p)
		}
	}
	if root, ok := repoRoot(); ok {
		pattern := filepath.Join(root, ".cache", "assets", "*", "etcd")
		matches, _ := filepath.Glob(pattern)
		for _, p := range matches {
			if isExecutable(p) {
				return p
			}
		}
		tried = append(tried, pattern)
	}
	t.Skipf("no etcd binary (looked at %s); run hack/build-assets.sh", strings.Join(tried, ", "))
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func repoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// member is one etcd process.
type member struct {
	name, clientURL, peerURL, dir, logPath string
	cmd                                    *exec.Cmd
	exited                                 chan struct{}
}

func (m *member) kill() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
	}
	<-m.exited
}

func (m *member) logTail() string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// startCluster starts a three-member etcd cluster on loopback and waits
// until it has a leader. It retries with new ports when a member fails to
// come up (for example because a picked port was taken meanwhile).
func startCluster(t *testing.T, bin string) []*member {
	t.Helper()
	const attempts = 3
	for attempt := 1; attempt <= attempts; attempt++ {
		ms, err := tryStartCluster(t, bin, attempt)
		if err == nil {
			return ms
		}
		for _, m := range ms {
			m.kill()
		}
		if attempt == attempts {
			var tails []string
			for _, m := range ms {
				tails = append(tails, fmt.Sprintf("--- %s log:\n%s", m.name, m.logTail()))
			}
			t.Fatalf("start etcd cluster: %v\n%s", err, strings.Join(tails, "\n"))
		}
		t.Logf("start etcd cluster (attempt %d): %v; retrying on new ports", attempt, err)
	}
	return nil
}

func tryStartCluster(t *testing.T, bin string, attempt int) ([]*member, error) {
	ports := map[int]bool{}
	for len(ports) < 6 {
		p, err := store.FreePort()
		if err != nil {
			return nil, err
		}
		ports[p] = true
	}
	var list []int
	for p := range ports {
		list = append(list, p)
	}
	base := t.TempDir()
	var ms []*member
	var initial []string
	for i := range 3 {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", list[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", list[2*i+1]),
			exited:    make(chan struct{}),
		}
		m.dir = filepath.Join(base, m.name)
		m.logPath = filepath.Join(base, m.name+".log")
		initial = append(initial, m.name+"="+m.peerURL)
		ms = append(ms, m)
	}
	var started []*member
	for _, m := range ms {
		logf, err := os.Create(m.logPath)
		if err != nil {
			return started, err
		}
		m.cmd = exec.Command(bin,
			"--name", m.name,
			"--data-dir", m.dir,
			"--listen-client-urls", m.clientURL,
			"--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", fmt.Sprintf("weft-store-test-%d", attempt),
			"--log-level", "warn",
			"--unsafe-no-fsync",
		)
		m.cmd.Stdout, m.cmd.Stderr = logf, logf
		if err := m.cmd.Start(); err != nil {
			logf.Close()
			return started, fmt.Errorf("start %s: %w", m.name, err)
		}
		started = append(started, m)
		go func() {
			_ = m.cmd.Wait()
			logf.Close()
			close(m.exited)
		}()
		t.Cleanup(m.kill)
	}

	admin := adminClient(t, ms)
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, m := range ms {
			select {
			case <-m.exited:
				return started, fmt.Errorf("%s exited during start-up: %s", m.name, lastLine(m.logTail()))
			default:
			}
		}
		if _, err := leaderOf(admin, ms); err == nil {
			return ms, nil
		} else if time.Now().After(deadline) {
			return started, fmt.Errorf("no leader within 20s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// adminClient talks to each member directly for Status.
func adminClient(t *testing.T, ms []*member) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.clientURL)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// leaderOf returns the member all live members agree is the leader.
func leaderOf(admin *clientv3.Client, ms []*member) (*member, error) {
	var (
		leader   uint64
		leaderM  *member
		liveSeen int
	)
	for _, m := range ms {
		select {
		case <-m.exited:
			continue
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := admin.Status(ctx, m.clientURL)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", m.name, err)
		}
		if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return nil, fmt.Errorf("%s: leader %x, others say %x", m.name, st.Leader, leader)
		}
		leader = st.Leader
		if st.Header.MemberId == st.Leader {
			leaderM = m
		}
		liveSeen++
	}
	if leaderM == nil {
		return nil, fmt.Errorf("leader %x is not among the %d live members", leader, liveSeen)
	}
	return leaderM, nil
}

// retry calls f until it succeeds or the deadline passes, and returns how
// many calls failed.
func retry(t *testing.T, what string, within time.Duration, f func(ctx context.Context) error) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for failures := 0; ; failures++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return failures
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExternalClusterSurvivesLeaderLoss runs the Store against a real
// three-member etcd cluster, kills the leader, and checks that reads,
// writes and an open watch keep working through the two survivors.
func TestExternalClusterSurvivesLeaderLoss(t *testing.T) {
	integration(t)
	bin := etcdBinary(t)
	ctx := testCtx(t)
	startedAt := time.Now()
	ms := startCluster(t, bin)
	t.Logf("cluster up in %v", time.Since(startedAt).Round(time.Millisecond))
	admin := adminClient(t, ms)

	var eps []string
	for _, m := range ms {
		eps = append(eps, m.clientURL)
	}
	cli, err := store.Connect(ctx, store.ConnectOptions{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: testLogger()})
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

	leader, err := leaderOf(admin, ms)
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	leader.kill()
	t.Logf("killed leader %s (%s)", leader.name, leader.clientURL)

	// Writes: the first may have to wait for a new leader. Create with a
	// fresh key per write makes a retry after an ambiguous failure (the
	// write may have committed) safe: it then finds the key and its
	// revision.
	n := len(want)
	write := func(k string, within time.Duration) int {
		return retry(t, "write "+k, within, func(ctx context.Context) error {
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
	if _, err := leaderOf(admin, ms); err != nil {
		t.Fatalf("survivors: %v", err)
	}
}
