package lab_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/lab"
)

// needNetns skips tests that need root, ip(8) and ping.
func needNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("netns test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("netns test: needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "ping", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("netns test: needs %s", tool)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("netns test: ip netns unusable: %v: %s", err, out)
	}
}

// labName is "wt" and 4 random lowercase letters: short, unique, and
// recognised by hack/check-leftovers.sh.
func labName(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return "wt" + string(b)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// realLab makes a lab handle with a unique name; cleanup runs down and
// checks that nothing of it remains.
func realLab(t *testing.T) *lab.Lab {
	t.Helper()
	name := labName(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l, err := lab.New(lab.Options{Name: name, StateDir: filepath.Join(t.TempDir(), "state"), Logger: log, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := l.Down(context.Background()); err != nil {
			t.Errorf("cleanup down: %v", err)
		}
		assertGone(t, name)
	})
	return l
}

// assertGone checks that no namespace and no host link carries the lab's prefix.
func assertGone(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], name+"-") {
			t.Errorf("namespace left behind: %s", f[0])
		}
	}
	out, err = exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), name) {
		t.Errorf("host namespace has a link named after lab %s:\n%s", name, out)
	}
}

func ping(ctx context.Context, l *lab.Lab, from, addr string) error {
	_, err := l.Run(ctx, from, "ping", "-n", "-c", "1", "-W", "2", addr)
	return err
}

func mustPing(ctx context.Context, t *testing.T, l *lab.Lab, from, addr string) {
	t.Helper()
	if err := ping(ctx, l, from, addr); err != nil {
		t.Errorf("%s -> %s should work: %v", from, addr, err)
	}
}

func mustNotPing(ctx context.Context, t *testing.T, l *lab.Lab, from, addr string) {
	t.Helper()
	if _, err := l.Run(ctx, from, "ping", "-n", "-c", "1", "-W", "1", addr); err == nil {
		t.Errorf("%s -> %s should fail (no fabric between clusters)", from, addr)
	}
}

// TestLabNamespaces brings up the default 2-cluster topology, checks
// connectivity inside clusters, the WAN and the control network, checks
// that clusters cannot reach each other's pods, then takes it down and
// checks that no namespace, link or process remains.
func TestLabNamespaces(t *testing.T) {
	needNetns(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := realLab(t)
	plan, err := l.Up(ctx, lab.DefaultTopology())
	if err != nil {
		t.Fatal(err)
	}

	mustPing(ctx, t, l, "c1/n1-p1", "10.1.1.3")       // same node
	mustPing(ctx, t, l, "c1/n1-p1", "10.1.2.2")       // other node
	mustPing(ctx, t, l, "c1/n2-p2", "10.1.1.2")       // and back
	mustPing(ctx, t, l, "c2/n2-p1", "10.2.1.3")       // in c2
	mustPing(ctx, t, l, "c1/n2", "198.19.255.1")      // node -> control namespace
	mustPing(ctx, t, l, "ctl", "198.19.255.22")       // control -> c2 n2
	mustPing(ctx, t, l, "c1/n1", "198.18.0.21")       // gateway -> gateway over the WAN
	mustNotPing(ctx, t, l, "c1/n1-p1", "10.2.1.2")    // pod -> other cluster's pod
	mustNotPing(ctx, t, l, "c2/n1", "10.1.1.2")       // gateway -> other cluster's pod
	mustNotPing(ctx, t, l, "c1/n2-p1", "198.18.0.21") // pods do not reach the WAN

	if _, err := l.Up(ctx, lab.DefaultTopology()); !errors.Is(err, lab.ErrExists) {
		t.Fatalf("second up: %v", err)
	}
	s, err := l.Status(ctx)
	if err != nil || s.Condition != "up" || s.Missing != 0 || len(s.Places) != len(plan.Namespaces()) {
		t.Fatalf("status = %+v, %v", s, err)
	}

	// A recorded process, and one the lab does not know about living in
	// one of its namespaces: down stops both.
	rec, err := l.StartProcess(ctx, "sleeper", "c2/n1", "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	// It ignores SIGTERM, so down has to escalate to SIGKILL.
	stray := exec.Command("ip", "netns", "exec", l.Name()+"-c1-n2-p1", "sh", "-c", "trap '' TERM; echo ready; exec sleep 300")
	strayOut, err := stray.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make([]byte, 6)
	if _, err := io.ReadFull(strayOut, ready); err != nil || string(ready) != "ready\n" {
		t.Fatalf("stray process: %q, %v", ready, err)
	}
	strayDone := make(chan error, 1)
	go func() { strayDone <- stray.Wait() }()
	kernel := lab.NewKernel(nil)
	if !kernel.Alive(rec.Proc()) {
		t.Fatal("recorded process is not running")
	}

	rep, err := l.Down(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Namespaces) != len(plan.Namespaces()) || rep.Processes < 2 || !rep.StateRemoved {
		t.Errorf("down report = %+v", rep)
	}
	if kernel.Alive(rec.Proc()) {
		t.Errorf("recorded process %d survived down", rec.PID)
	}
	select {
	case err := <-strayDone:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("stray process ended with %v, want killed (it ignores SIGTERM)", err)
		}
	case <-ctx.Done():
		t.Errorf("stray process %d survived down", stray.Process.Pid)
		stray.Process.Kill()
	}
	assertGone(t, l.Name())
	if _, err := os.Stat(l.StateDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir remains: %v", err)
	}
	if rep, err := l.Down(ctx); err != nil || !rep.Nothing() {
		t.Errorf("down on nothing: %+v, %v", rep, err)
	}
}

// TestLabCrashedRunCleanup deletes the state of a running lab (a crash)
// and checks that down still removes its namespaces by prefix while a
// namespace of a similar name survives.
func TestLabCrashedRunCleanup(t *testing.T) {
	needNetns(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := realLab(t)
	one := 1
	plan, err := l.Up(ctx, lab.Topology{Clusters: []lab.Cluster{{Name: "c1", Nodes: 2, PodsPerNode: &one}}})
	if err != nil {
		t.Fatal(err)
	}
	similar := []string{l.Name() + "x-keep", l.Name()}
	for _, ns := range similar {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	if err := os.RemoveAll(l.StateDir()); err != nil {
		t.Fatal(err)
	}
	s, err := l.Status(ctx)
	if err != nil || s.Condition != "leftovers" || len(s.Stray) != len(plan.Namespaces()) {
		t.Fatalf("status after crash = %+v, %v", s, err)
	}
	rep, err := l.Down(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Namespaces) != len(plan.Namespaces()) {
		t.Errorf("down removed %v", rep.Namespaces)
	}
	assertGone(t, l.Name())
	for _, ns := range similar {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
			t.Errorf("namespace %s of a similar name was touched: %v", ns, err)
		}
	}
}

// TestLabNAT puts c1's gateway behind a NAT router: it reaches the other
// cluster's gateway over the WAN, masqueraded, and nothing from the WAN
// reaches the inside.
func TestLabNAT(t *testing.T) {
	needNetns(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := realLab(t)
	zero := 0
	if _, err := l.Up(ctx, lab.Topology{Clusters: []lab.Cluster{
		{Name: "c1", Nodes: 1, PodsPerNode: &zero, NAT: true},
		{Name: "c2", Nodes: 1, PodsPerNode: &zero},
	}}); err != nil {
		t.Fatal(err)
	}
	mustPing(ctx, t, l, "c1/n1", "198.18.0.10") // its router's WAN address
	mustPing(ctx, t, l, "c1/n1", "198.18.0.21") // c2's gateway, through NAT
	mustPing(ctx, t, l, "c2/n1", "198.18.0.10") // the router is public
	out, err := l.Run(ctx, "c1/rtr", "iptables", "-t", "nat", "-L", "POSTROUTING", "-v", "-n", "-x")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+MASQUERADE`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MASQUERADE rule in the router:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("MASQUERADE never matched:\n%s", out)
	}
	// The inside is not reachable from the WAN, even with a route to it.
	if _, err := l.Run(ctx, "c2/n1", "ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.10"); err != nil {
		t.Fatal(err)
	}
	mustNotPing(ctx, t, l, "c2/n1", "198.18.1.11")
}

// TestLabWANShaping checks WAN loss (100%: the WAN is cut while LANs still
// work) and, where the kernel has netem, WAN delay.
func TestLabWANShaping(t *testing.T) {
	needNetns(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	zero := 0
	topo := lab.Topology{Clusters: []lab.Cluster{{Name: "c1", PodsPerNode: &zero}, {Name: "c2", PodsPerNode: &zero}}}

	t.Run("loss", func(t *testing.T) {
		l := realLab(t)
		topo := topo
		topo.WAN.Loss = 100
		if _, err := l.Up(ctx, topo); err != nil {
			t.Fatal(err)
		}
		mustPing(ctx, t, l, "c1/n1", "198.19.1.12")
		if _, err := l.Run(ctx, "c1/n1", "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "198.18.0.21"); err == nil {
			t.Error("WAN ping got through 100% loss")
		}
	})
	t.Run("delay", func(t *testing.T) {
		l := realLab(t)
		topo := topo
		topo.WAN.Delay = lab.Duration(20 * time.Millisecond)
		_, err := l.Up(ctx, topo)
		if errors.Is(err, lab.ErrNetemUnsupported) {
			t.Skipf("kernel lacks tc netem: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := l.Run(ctx, "c1/n1", "ping", "-n", "-c", "1", "-W", "2", "198.18.0.21")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`time=([0-9.]+) ms`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no RTT in %s", out)
		}
		if rtt, _ := strconv.ParseFloat(m[1], 64); rtt < 40 {
			t.Errorf("RTT %.1f ms, want >= 40 ms (2 x 20 ms)", rtt)
		}
	})
}
