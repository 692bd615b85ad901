// Package etcdtest runs a real multi-member etcd cluster on loopback for
// tests: three etcd processes started from the binary that
// hack/build-assets.sh builds, with helpers to find the leader and kill a
// member. Tests that need it skip (with a message saying how to build the
// binary) when no etcd binary is found.
//
// Every process is killed and every directory removed at test cleanup.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftnet/weft/internal/testenv"
)

// Size is the number of members Start runs.
const Size = 3

// StartTimeout bounds one attempt to bring a cluster up (until all members
// agree on a leader).
const StartTimeout = 20 * time.Second

// Binary returns the path of the etcd binary built by hack/build-assets.sh
// (see testenv.FindAssets); it skips the test when there is none.
func Binary(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(testenv.Assets(tb, "etcd"), "etcd")
}

// Member is one etcd process of a Cluster.
type Member struct {
	// Name is the etcd member name (m0, m1, ...).
	Name string
	// ClientURL and PeerURL are where it listens (http://127.0.0.1:port).
	ClientURL, PeerURL string
	// Dir is its data directory, LogPath the file its output goes to.
	Dir, LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
}

// Kill kills the process (SIGKILL: no graceful leave, as in a crash) and
// waits until it has exited. It is safe to call more than once.
func (m *Member) Kill() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
	}
	<-m.exited
}

// Exited is closed once the process has exited.
func (m *Member) Exited() <-chan struct{} { return m.exited }

// Alive reports whether the process is still running.
func (m *Member) Alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// LogTail returns the last few kilobytes of the member's output.
func (m *Member) LogTail() string {
	b, _ := os.ReadFile(m.LogPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// Cluster is a running etcd cluster on loopback.
type Cluster struct {
	Members []*Member
	admin   *clientv3.Client
}

// Start starts a Size-member etcd cluster on loopback ports and waits
// until it has a leader. It retries with new ports when a member fails to
// come up (for example because a picked port was taken meanwhile), and
// fails the test with the members' log tails when it cannot. It skips the
// test when there is no etcd binary (see Binary).
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	bin := Binary(tb)
	const attempts = 3
	for attempt := 1; attempt <= attempts; attempt++ {
		c, started, err := tryStart(tb, bin, attempt)
		if err == nil {
			return c
		}
		for _, m := range started {
			m.Kill()
		}
		if attempt == attempts {
			var tails []string
			for _, m := range started {
				tails = append(tails, fmt.Sprintf("--- %s log:\n%s", m.Name, m.LogTail()))
			}
			tb.Fatalf("start etcd cluster: %v\n%s", err, strings.Join(tails, "\n"))
		}
		tb.Logf("start etcd cluster (attempt %d): %v; retrying on new ports", attempt, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tryStart(tb testing.TB, bin string, attempt int) (*Cluster, []*Member, error) {
	ports := map[int]bool{}
	for len(ports) < 2*Size {
		p, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		ports[p] = true
	}
	var list []int
	for p := range ports {
		list = append(list, p)
	}
	base := tb.TempDir()
	var ms []*Member
	var initial []string
	for i := range Size {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", list[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", list[2*i+1]),
			exited:    make(chan struct{}),
		}
		m.Dir = filepath.Join(base, m.Name)
		m.LogPath = filepath.Join(base, m.Name+".log")
		initial = append(initial, m.Name+"="+m.PeerURL)
		ms = append(ms, m)
	}
	var started []*Member
	for _, m := range ms {
		logf, err := os.Create(m.LogPath)
		if err != nil {
			return nil, started, err
		}
		m.cmd = exec.Command(bin,
			"--name", m.Name,
			"--data-dir", m.Dir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", fmt.Sprintf("weft-etcdtest-%d", attempt),
			"--log-level", "warn",
			"--unsafe-no-fsync",
		)
		m.cmd.Stdout, m.cmd.Stderr = logf, logf
		m.cmd.SysProcAttr = sysProcAttr()
		if err := m.cmd.Start(); err != nil {
			logf.Close()
			return nil, started, fmt.Errorf("start %s: %w", m.Name, err)
		}
		started = append(started, m)
		go func() {
			_ = m.cmd.Wait()
			logf.Close()
			close(m.exited)
		}()
		tb.Cleanup(m.Kill)
	}

	c := &Cluster{Members: ms}
	admin, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, started, fmt.Errorf("etcd client: %w", err)
	}
	tb.Cleanup(func() { admin.Close() })
	c.admin = admin
	deadline := time.Now().Add(StartTimeout)
	for {
		for _, m := range ms {
			if !m.Alive() {
				return nil, started, fmt.Errorf("%s exited during start-up: %s", m.Name, lastLine(m.LogTail()))
			}
		}
		if _, err := c.Leader(); err == nil {
			return c, started, nil
		} else if time.Now().After(deadline) {
			return nil, started, fmt.Errorf("no leader within %v: %w", StartTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// Endpoints returns the client URLs of all members, dead or alive.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, 0, len(c.Members))
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Leader returns the member every live member agrees is the leader, or an
// error when they do not agree, a live member does not answer, or the
// leader is not among the live members.
func (c *Cluster) Leader() (*Member, error) {
	var (
		leader   uint64
		leaderM  *Member
		liveSeen int
	)
	for _, m := range c.Members {
		if !m.Alive() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.admin.Status(ctx, m.ClientURL)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", m.Name, err)
		}
		if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return nil, fmt.Errorf("%s: leader %x, others say %x", m.Name, st.Leader, leader)
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

// WaitLeader polls Leader until it succeeds or within has passed.
func (c *Cluster) WaitLeader(within time.Duration) (*Member, error) {
	deadline := time.Now().Add(within)
	for {
		m, err := c.Leader()
		if err == nil || time.Now().After(deadline) {
			return m, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// KillLeader kills the current leader and returns it.
func (c *Cluster) KillLeader() (*Member, error) {
	m, err := c.Leader()
	if err != nil {
		return nil, err
	}
	m.Kill()
	return m, nil
}

// Logs returns the log tails of all members, for failure messages.
func (c *Cluster) Logs() string {
	var tails []string
	for _, m := range c.Members {
		tails = append(tails, fmt.Sprintf("--- %s log:\n%s", m.Name, m.LogTail()))
	}
	return strings.Join(tails, "\n")
}

// Retry calls f, with a fresh 3 s context each time, until it returns nil
// or within has passed (then it fails the test with the last error), and
// returns how many calls failed. Use it for the first operations after
// killing a member, which may have to wait for a new leader; f must be
// safe to repeat after an ambiguous failure (the operation may have
// committed).
func Retry(tb testing.TB, what string, within time.Duration, f func(ctx context.Context) error) int {
	tb.Helper()
	deadline := time.Now().Add(within)
	for failures := 0; ; failures++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return failures
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still failing after %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
