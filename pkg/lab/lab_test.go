package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/lab"
	"github.com/weftnet/weft/pkg/lab/labtest"
)

func newFakeLab(t *testing.T, name string) (*lab.Lab, *labtest.Fake) {
	t.Helper()
	fk := labtest.New()
	l, err := lab.New(lab.Options{Name: name, StateDir: filepath.Join(t.TempDir(), name), Kernel: fk})
	if err != nil {
		t.Fatal(err)
	}
	return l, fk
}

func TestUpDownFake(t *testing.T) {
	ctx := context.Background()
	l, fk := newFakeLab(t, "weft")
	fk.AddNamespace("weftx-c1-n1") // similar prefix: not ours
	fk.AddNamespace("other")
	plan, err := l.Up(ctx, lab.DefaultTopology())
	if err != nil {
		t.Fatal(err)
	}
	want := append(plan.Namespaces(), "other", "weftx-c1-n1")
	slices.Sort(want)
	if got := fk.NamespaceNames(); !slices.Equal(got, want) {
		t.Fatalf("namespaces:\n got %v\nwant %v", got, want)
	}
	// Spot checks of the built state (the fake checked every step's
	// preconditions: gateways on-link, bridges present, names free).
	state := fk.String()
	for _, line := range []string{
		"  link eth-lan veth peer weft-c1-lan:n1 addr 198.19.1.11/24",
		"  link eth0 veth peer weft-c2-n2:p2 addr 10.2.2.3/24",
		"  route 10.1.2.0/24 via 198.19.1.12 dev eth-lan",
		"  link c2-n1 veth peer weft-c2-n1:eth-wan master br0",
		"  sysctl net.ipv4.ip_forward=1",
	} {
		if !strings.Contains(state, line+"\n") {
			t.Errorf("fake state lacks %q", line)
		}
	}
	st, err := l.State()
	if err != nil || !st.Ready || len(st.Namespaces) != len(plan.Namespaces()) {
		t.Fatalf("state = %+v, %v", st, err)
	}

	// A second up refuses.
	if _, err := l.Up(ctx, lab.DefaultTopology()); !errors.Is(err, lab.ErrExists) || !strings.Contains(err.Error(), "run down first") {
		t.Fatalf("second up: %v", err)
	}

	// Status sees everything present.
	s, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Condition != "up" || s.Missing != 0 || len(s.Places) != len(plan.Namespaces()) || len(s.Stray) != 0 {
		t.Fatalf("status = %+v", s)
	}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lab weft: up", "c1/n1-p2", "lan 198.19.1.11 ctl 198.19.255.11 wan 198.18.0.11 pods 10.1.1.0/24", "gateway"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, b.String())
		}
	}

	// Processes: a recorded one and a stray one inside a lab namespace.
	p, err := l.StartProcess(ctx, "sleeper", "c1/n1", "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	stray := fk.AddProcess("weft-c2-n2-p1")
	other := fk.AddProcess("other")

	rep, err := l.Down(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fk.NamespaceNames(); !slices.Equal(got, []string{"other", "weftx-c1-n1"}) {
		t.Fatalf("after down: %v", got)
	}
	if len(rep.Namespaces) != len(plan.Namespaces()) || rep.Processes != 2 || !rep.StateRemoved {
		t.Fatalf("report = %+v", rep)
	}
	if stopped := fk.Stopped(); !slices.Contains(stopped, p.PID) || !slices.Contains(stopped, stray.PID) || slices.Contains(stopped, other.PID) {
		t.Fatalf("stopped %v (recorded %d, stray %d, other %d)", stopped, p.PID, stray.PID, other.PID)
	}
	if _, err := os.Stat(l.StateDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir remains: %v", err)
	}
	// Down again: nothing to do, no error.
	rep, err = l.Down(ctx)
	if err != nil || !rep.Nothing() {
		t.Fatalf("second down: %+v, %v", rep, err)
	}
}

func TestDownCleansCrashedRunByPrefix(t *testing.T) {
	ctx := context.Background()
	l, fk := newFakeLab(t, "wtab")
	if _, err := l.Up(ctx, lab.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(l.StateDir()); err != nil { // the crash
		t.Fatal(err)
	}
	for _, n := range []string{"wtab", "wtabx-c1", "wta-c1", "wtab-zz-extra"} {
		fk.AddNamespace(n)
	}
	s, err := l.Status(ctx)
	if err != nil || s.Condition != "leftovers" || !slices.Contains(s.Stray, "wtab-zz-extra") {
		t.Fatalf("status = %+v, %v", s, err)
	}
	if _, err := l.Up(ctx, lab.DefaultTopology()); !errors.Is(err, lab.ErrExists) {
		t.Fatalf("up over leftovers: %v", err)
	}
	if _, err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fk.NamespaceNames(); !slices.Equal(got, []string{"wta-c1", "wtab", "wtabx-c1"}) {
		t.Fatalf("after down: %v", got)
	}
}

func TestUpRollsBackOnFailure(t *testing.T) {
	ctx := context.Background()
	l, fk := newFakeLab(t, "weft")
	fk.FailOn(func(s lab.Step) error {
		if r, ok := s.(lab.AddRoute); ok && r.NS == "weft-c2-n1" {
			return errors.New("injected")
		}
		return nil
	})
	_, err := l.Up(ctx, lab.DefaultTopology())
	if err == nil || !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), "route weft-c2-n1") {
		t.Fatalf("up: %v", err)
	}
	if got := fk.NamespaceNames(); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}
	if _, err := os.Stat(l.StateDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir remains: %v", err)
	}
}

func TestUpKeepOnFailure(t *testing.T) {
	fk := labtest.New()
	l, err := lab.New(lab.Options{Name: "weft", StateDir: t.TempDir() + "/s", Kernel: fk, KeepOnFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	fk.FailOn(func(s lab.Step) error {
		if _, ok := s.(lab.AddBridge); ok {
			return errors.New("injected")
		}
		return nil
	})
	if _, err := l.Up(context.Background(), lab.DefaultTopology()); err == nil {
		t.Fatal("up succeeded")
	}
	st, err := l.State()
	if err != nil || st.Ready || len(st.Namespaces) == 0 {
		t.Fatalf("state = %+v, %v", st, err)
	}
	s, _ := l.Status(context.Background())
	if s.Condition != "incomplete" {
		t.Fatalf("condition = %s", s.Condition)
	}
	if _, err := l.Down(context.Background()); err != nil || len(fk.NamespaceNames()) != 0 {
		t.Fatalf("down: %v, left %v", err, fk.NamespaceNames())
	}
}

func TestUpRefusesForeignStateDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := lab.New(lab.Options{StateDir: dir, Kernel: labtest.New()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Up(context.Background(), lab.DefaultTopology()); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("up: %v", err)
	}
	// Down does not remove a directory without lab state.
	if _, err := l.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
		t.Fatal(err)
	}
}

func TestUpNameMismatch(t *testing.T) {
	l, _ := newFakeLab(t, "weft")
	topo := lab.DefaultTopology()
	topo.Name = "other"
	if _, err := l.Up(context.Background(), topo); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("up: %v", err)
	}
}

func TestNewRejectsBadName(t *testing.T) {
	for _, n := range []string{"we-ft", "Weft", "1weft", "abcdefghijk"} {
		if _, err := lab.New(lab.Options{Name: n, Kernel: labtest.New()}); err == nil {
			t.Errorf("New(%q) accepted", n)
		}
	}
}

func TestCommandResolvesTargets(t *testing.T) {
	ctx := context.Background()
	l, _ := newFakeLab(t, "weft")
	if _, err := l.Command(ctx, "c1/n1", "true"); err == nil {
		t.Fatal("command on a lab that is down")
	}
	if _, err := l.Up(ctx, lab.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	cmd, err := l.Command(ctx, "c2/n2-p1", "ping", "-c", "1", "10.2.1.2")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cmd.Args, " "); got != "ip netns exec weft-c2-n2-p1 ping -c 1 10.2.1.2" {
		t.Fatalf("args = %s", got)
	}
	for _, bad := range []string{"c3/n1", "c1/n9", "c1/rtr", "nonsense"} {
		if _, err := l.Command(ctx, bad, "true"); err == nil {
			t.Errorf("Command(%s) accepted", bad)
		}
	}
	pl, err := l.Resolve("c2/n2-p1")
	if err != nil || pl.Addr.String() != "10.2.2.2" {
		t.Fatalf("resolve: %+v %v", pl, err)
	}
}

func TestStateOfAnotherLabIsNotTouched(t *testing.T) {
	ctx := context.Background()
	fk := labtest.New()
	dir := t.TempDir() + "/shared"
	a, _ := lab.New(lab.Options{Name: "laba", StateDir: dir, Kernel: fk})
	b, _ := lab.New(lab.Options{Name: "labb", StateDir: dir, Kernel: fk})
	if _, err := a.Up(ctx, lab.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.StartProcess(ctx, "daemon", "c1/n1", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Up(ctx, lab.DefaultTopology()); err == nil || !strings.Contains(err.Error(), `state of lab "laba"`) {
		t.Fatalf("up b: %v", err)
	}
	if _, err := b.Down(ctx); err == nil {
		t.Fatal("down b acted on lab a's state")
	}
	if len(fk.Stopped()) != 0 {
		t.Fatalf("down b stopped %v", fk.Stopped())
	}
	if _, err := a.State(); err != nil {
		t.Fatalf("lab a's state: %v", err)
	}
	if _, err := a.Down(ctx); err != nil {
		t.Fatal(err)
	}
}
