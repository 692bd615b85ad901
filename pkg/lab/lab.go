package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ErrExists is returned by [Lab.Up] when the lab (its state or any of its
// namespaces) is already there.
var ErrExists = errors.New("already exists")

// ErrNotUp is returned when a command needs a lab that has no state.
var ErrNotUp = errors.New("lab is not up")

// DefaultStopGrace is how long `down` waits after SIGTERM before SIGKILL.
const DefaultStopGrace = 5 * time.Second

// Options configure a [Lab].
type Options struct {
	// Name of the lab ("" means DefaultName).
	Name string
	// StateDir holds the state ("" means DefaultStateDir(Name)).
	StateDir string
	// Kernel does the work; nil means NewKernel(Logger).
	Kernel Kernel
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// StopGrace between SIGTERM and SIGKILL (0 means DefaultStopGrace).
	StopGrace time.Duration
	// KeepOnFailure leaves a half-built lab in place when Up fails
	// (for debugging); by default Up removes what it made.
	KeepOnFailure bool
	// Now is the clock (nil means time.Now).
	Now func() time.Time
}

// Lab builds, inspects and removes one named lab.
type Lab struct {
	name     string
	names    Names
	stateDir string
	kernel   Kernel
	log      *slog.Logger
	grace    time.Duration
	keep     bool
	now      func() time.Time
}

// New checks the options and returns the lab handle; it touches nothing.
func New(o Options) (*Lab, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := ValidateLabName(o.Name); err != nil {
		return nil, err
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir(o.Name)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Kernel == nil {
		o.Kernel = NewKernel(o.Logger)
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Lab{
		name: o.Name, names: Names{Lab: o.Name}, stateDir: o.StateDir, kernel: o.Kernel,
		log: o.Logger.With("lab", o.Name), grace: o.StopGrace, keep: o.KeepOnFailure, now: o.Now,
	}, nil
}

// Name is the lab's name.
func (l *Lab) Name() string { return l.name }

// StateDir is the lab's state directory.
func (l *Lab) StateDir() string { return l.stateDir }

// readState reads the state and insists that it is this lab's: a state
// directory holding another lab's state is never acted upon.
func (l *Lab) readState() (*State, error) {
	st, err := readState(l.stateDir)
	if err != nil {
		return nil, err
	}
	if st.Name != l.name {
		return nil, fmt.Errorf("state dir %s holds the state of lab %q, not %q; refusing to use it", l.stateDir, st.Name, l.name)
	}
	return st, nil
}

// State reads the lab's state (an error wrapping ErrNotUp when absent).
func (l *Lab) State() (*State, error) {
	st, err := l.readState()
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab %s (state dir %s): %w", l.name, l.stateDir, ErrNotUp)
	}
	return st, err
}

// Plan recomputes the plan of the running lab from its state.
func (l *Lab) Plan() (*Plan, error) {
	st, err := l.State()
	if err != nil {
		return nil, err
	}
	return NewPlan(st.Topology)
}

// ownedNamespaces lists the host's namespaces that belong to this lab.
func (l *Lab) ownedNamespaces(ctx context.Context) ([]string, error) {
	all, err := l.kernel.Namespaces(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range all {
		if l.names.Owns(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Up builds the lab described by t (defaults applied; t.Name must be empty
// or the lab's name). It refuses to touch an existing lab of the same name
// (ErrExists). On failure it removes what it made unless KeepOnFailure.
func (l *Lab) Up(ctx context.Context, t Topology) (*Plan, error) {
	if t.Name == "" {
		t.Name = l.name
	} else if t.Name != l.name {
		return nil, fmt.Errorf("topology name %q differs from the lab name %q", t.Name, l.name)
	}
	plan, err := NewPlan(t)
	if err != nil {
		return nil, err
	}
	if err := l.checkAbsent(ctx); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: state dir: %w", l.name, err)
	}
	st := &State{Version: stateVersion, Name: l.name, CreatedAt: l.now().UTC(), Topology: plan.Topology}
	if err := writeState(l.stateDir, st); err != nil {
		return nil, fmt.Errorf("lab %s: %w", l.name, err)
	}
	l.log.Info("building lab", "clusters", len(plan.Clusters), "namespaces", len(plan.Namespaces()), "steps", len(plan.Steps), "state", l.stateDir)
	start := l.now()
	phase := ""
	for _, s := range plan.Steps {
		if p := stepPhase(s); p != phase {
			phase = p
			l.log.Info(phase)
		}
		if err := l.kernel.Apply(ctx, s); err != nil {
			return nil, l.failUp(ctx, fmt.Errorf("lab %s: %w", l.name, err))
		}
		if c, ok := s.(CreateNamespace); ok {
			st.Namespaces = append(st.Namespaces, c.Name)
			if err := writeState(l.stateDir, st); err != nil {
				return nil, l.failUp(ctx, fmt.Errorf("lab %s: %w", l.name, err))
			}
		}
	}
	st.Ready = true
	if err := writeState(l.stateDir, st); err != nil {
		return nil, l.failUp(ctx, fmt.Errorf("lab %s: %w", l.name, err))
	}
	l.log.Info("lab is up", "namespaces", len(st.Namespaces), "took", l.now().Sub(start).Round(time.Millisecond))
	return plan, nil
}

func stepPhase(s Step) string {
	switch s.(type) {
	case CreateNamespace, SetSysctl:
		return "creating namespaces"
	case AddBridge:
		return "creating bridges"
	case AddVeth:
		return "wiring veths"
	case AddAddress:
		return "adding addresses"
	case AddRoute:
		return "adding routes"
	case AddNetem:
		return "shaping the WAN"
	case AddMasquerade:
		return "configuring NAT routers"
	}
	return fmt.Sprintf("%T", s)
}

// checkAbsent fails with ErrExists when state or namespaces of the lab
// exist, and refuses a non-empty state directory that holds no lab state.
func (l *Lab) checkAbsent(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(l.stateDir, StateFile)); err == nil {
		if _, err := l.readState(); err != nil {
			return err
		}
		return fmt.Errorf("lab %s %w (state %s); run down first", l.name, ErrExists, filepath.Join(l.stateDir, StateFile))
	}
	if ents, err := os.ReadDir(l.stateDir); err == nil && len(ents) > 0 {
		return fmt.Errorf("lab %s: state dir %s is not empty and holds no lab state; refusing to use it", l.name, l.stateDir)
	}
	owned, err := l.ownedNamespaces(ctx)
	if err != nil {
		return fmt.Errorf("lab %s: %w", l.name, err)
	}
	if len(owned) > 0 {
		return fmt.Errorf("lab %s %w: %d namespaces of an earlier run remain (%s); run down first", l.name, ErrExists, len(owned), abbrev(owned, 3))
	}
	return nil
}

func abbrev(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(", ... %d more", len(list)-n)
}

func (l *Lab) failUp(ctx context.Context, err error) error {
	if l.keep {
		l.log.Error("lab up failed; keeping what was made (KeepOnFailure)", "err", err)
		return err
	}
	l.log.Error("lab up failed; removing what was made", "err", err)
	if _, derr := l.Down(context.WithoutCancel(ctx)); derr != nil {
		return errors.Join(err, fmt.Errorf("cleanup after failure: %w", derr))
	}
	return err
}

// DownReport says what Down removed.
type DownReport struct {
	Namespaces   []string `json:"namespaces"`   // deleted
	Processes    int      `json:"processes"`    // stopped
	StateRemoved bool     `json:"stateRemoved"` // the state dir was removed
}

// Nothing reports whether there was nothing to remove.
func (r DownReport) Nothing() bool {
	return len(r.Namespaces) == 0 && r.Processes == 0 && !r.StateRemoved
}

// Down removes the lab: it stops the processes it recorded (SIGTERM, then
// SIGKILL after the grace period) and any other process living in one of
// its namespaces, deletes the recorded namespaces and every other
// namespace named "<lab>-..." (leftovers of a crashed run), and removes the
// state directory. It never touches a name outside the lab's prefix. With
// nothing there it succeeds and does nothing.
func (l *Lab) Down(ctx context.Context) (DownReport, error) {
	var rep DownReport
	var errs []error
	st, err := readState(l.stateDir)
	if err == nil && st.Name != l.name {
		return rep, fmt.Errorf("lab %s down: state dir %s holds the state of lab %q; refusing to touch it", l.name, l.stateDir, st.Name)
	}
	stateFound := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("unreadable lab state; cleaning up by name prefix", "err", err)
		stateFound = true // remove the broken file too
	}
	if st != nil && len(st.Processes) > 0 {
		procs := make([]Proc, len(st.Processes))
		for i, p := range st.Processes {
			procs[i] = p.Proc()
		}
		n, err := l.kernel.StopProcesses(ctx, procs, l.grace)
		rep.Processes += n
		if err != nil {
			errs = append(errs, fmt.Errorf("stop recorded processes: %w", err))
		}
	}

	owned, err := l.ownedNamespaces(ctx)
	if err != nil {
		return rep, fmt.Errorf("lab %s down: %w", l.name, err)
	}
	// Recorded namespaces first, newest first (pods before nodes before
	// switches), then leftovers found by prefix.
	present := map[string]bool{}
	for _, n := range owned {
		present[n] = true
	}
	var order []string
	if st != nil {
		for i := len(st.Namespaces) - 1; i >= 0; i-- {
			if n := st.Namespaces[i]; present[n] {
				order = append(order, n)
				delete(present, n)
			}
		}
	}
	for _, n := range owned {
		if present[n] {
			order = append(order, n)
		}
	}
	for _, ns := range order {
		procs, err := l.kernel.NamespaceProcesses(ctx, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(procs) == 0 {
			continue
		}
		l.log.Info("stopping processes in namespace", "namespace", ns, "count", len(procs))
		n, err := l.kernel.StopProcesses(ctx, procs, l.grace)
		rep.Processes += n
		if err != nil {
			errs = append(errs, fmt.Errorf("stop processes in %s: %w", ns, err))
		}
	}
	if len(order) > 0 {
		l.log.Info("deleting namespaces", "count", len(order))
	}
	for _, ns := range order {
		if err := l.kernel.DeleteNamespace(ctx, ns); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Namespaces = append(rep.Namespaces, ns)
	}
	if left, err := l.ownedNamespaces(ctx); err != nil {
		errs = append(errs, err)
	} else if len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces remain: %s", abbrev(left, 5)))
	}

	if stateFound {
		// Up refuses a non-empty directory without state, so a directory
		// holding the state file is the lab's own.
		if err := os.RemoveAll(l.stateDir); err != nil {
			errs = append(errs, fmt.Errorf("remove state dir: %w", err))
		} else {
			rep.StateRemoved = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("lab %s down: %w", l.name, err)
	}
	if rep.Nothing() {
		l.log.Debug("nothing to remove")
	} else {
		l.log.Info("lab is down", "namespaces", len(rep.Namespaces), "processes", rep.Processes)
	}
	return rep, nil
}

// Resolve finds a target ("c1/n1-p2", see [ParseTarget]) in the running lab.
func (l *Lab) Resolve(target string) (Place, error) {
	t, err := ParseTarget(target)
	if err != nil {
		return Place{}, err
	}
	plan, err := l.Plan()
	if err != nil {
		return Place{}, err
	}
	return plan.Resolve(t)
}

// namespaceFor resolves a target to an existing namespace. Without state
// (a crashed run) it falls back to the naming scheme.
func (l *Lab) namespaceFor(ctx context.Context, target string) (string, error) {
	t, err := ParseTarget(target)
	if err != nil {
		return "", err
	}
	ns := l.names.Namespace(t)
	if plan, err := l.Plan(); err == nil {
		pl, err := plan.Resolve(t)
		if err != nil {
			return "", err
		}
		ns = pl.Namespace
	} else if !errors.Is(err, ErrNotUp) {
		return "", err
	}
	all, err := l.kernel.Namespaces(ctx)
	if err != nil {
		return "", err
	}
	if !slices.Contains(all, ns) {
		return "", fmt.Errorf("target %s: namespace %s does not exist (is lab %s up? see lab status)", target, ns, l.name)
	}
	return ns, nil
}

// Command prepares args to run inside the target's namespace through
// `ip netns exec`; the caller wires stdio and runs it.
func (l *Lab) Command(ctx context.Context, target string, args ...string) (*exec.Cmd, error) {
	if len(args) == 0 {
		return nil, errors.New("no command given")
	}
	ns, err := l.namespaceFor(ctx, target)
	if err != nil {
		return nil, err
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...), nil
}

// Run runs args inside the target's namespace and returns the combined
// output; a failure's error includes it.
func (l *Lab) Run(ctx context.Context, target string, args ...string) (string, error) {
	ns, err := l.namespaceFor(ctx, target)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", target, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

var processNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// HostTarget makes StartProcess run a process in the host's own network
// namespace (the lab's loopback proxy: it listens on 127.0.0.1 only and
// configures nothing).
const HostTarget = "host"

// StartProcess starts a long-running process (a daemon of a later stage:
// apiserver, broker, gateway...) inside the target's namespace (or the
// host's, for HostTarget), logs its output to <state dir>/logs/<name>.log
// and records it so that Down stops it.
func (l *Lab) StartProcess(ctx context.Context, name, target string, args ...string) (Process, error) {
	if !processNameRE.MatchString(name) {
		return Process{}, fmt.Errorf("process name %q: want lowercase letters, digits, '.', '_' and '-'", name)
	}
	st, err := l.State()
	if err != nil {
		return Process{}, err
	}
	for _, p := range st.Processes {
		if p.Name == name && l.kernel.Alive(p.Proc()) {
			return Process{}, fmt.Errorf("process %s already runs (pid %d)", name, p.PID)
		}
	}
	ns := ""
	if target != HostTarget {
		var err error
		if ns, err = l.namespaceFor(ctx, target); err != nil {
			return Process{}, err
		}
	}
	log := filepath.Join(l.stateDir, "logs", name+".log")
	pr, err := l.kernel.StartProcess(ctx, ProcessSpec{Namespace: ns, Args: args, Log: log})
	if err != nil {
		return Process{}, err
	}
	p := Process{Name: name, Target: target, Namespace: ns, PID: pr.PID, Start: pr.Start, Args: args, Log: log}
	st.Processes = append(st.Processes, p)
	if err := writeState(l.stateDir, st); err != nil {
		_, _ = l.kernel.StopProcesses(context.WithoutCancel(ctx), []Proc{pr}, l.grace)
		return Process{}, err
	}
	l.log.Info("started process", "name", name, "target", target, "pid", p.PID, "log", log)
	return p, nil
}

// StopProcess stops the named process (SIGTERM, SIGKILL after the grace)
// and forgets it. It returns the record so the caller can start it again.
func (l *Lab) StopProcess(ctx context.Context, name string) (Process, error) {
	st, err := l.State()
	if err != nil {
		return Process{}, err
	}
	i := slices.IndexFunc(st.Processes, func(p Process) bool { return p.Name == name })
	if i < 0 {
		return Process{}, fmt.Errorf("process %s: not recorded in lab %s", name, l.name)
	}
	p := st.Processes[i]
	if _, err := l.kernel.StopProcesses(ctx, []Proc{p.Proc()}, l.grace); err != nil {
		return p, fmt.Errorf("stop %s: %w", name, err)
	}
	st.Processes = slices.Delete(st.Processes, i, i+1)
	if err := writeState(l.stateDir, st); err != nil {
		return p, err
	}
	l.log.Info("stopped process", "name", name, "pid", p.PID)
	return p, nil
}

// RestartProcess stops the named process and starts it again with the same
// target and arguments.
func (l *Lab) RestartProcess(ctx context.Context, name string) (Process, error) {
	p, err := l.StopProcess(ctx, name)
	if err != nil {
		return Process{}, err
	}
	return l.StartProcess(ctx, name, p.Target, p.Args...)
}
