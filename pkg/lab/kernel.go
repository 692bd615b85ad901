package lab

import (
	"context"
	"errors"
	"time"
)

// Kernel is everything the lab does to the host, behind a few methods so
// that the build and teardown logic runs against a fake (package labtest)
// in unit tests. [NewKernel] returns the real one (netlink, setns,
// iptables, /proc).
type Kernel interface {
	// Namespaces lists the named network namespaces of the host.
	Namespaces(ctx context.Context) ([]string, error)
	// DeleteNamespace removes a named namespace (no error if absent).
	DeleteNamespace(ctx context.Context, name string) error
	// Apply carries out one build step.
	Apply(ctx context.Context, s Step) error
	// NamespaceProcesses lists the processes living in a named namespace.
	NamespaceProcesses(ctx context.Context, ns string) ([]Proc, error)
	// StartProcess starts a long-running process inside a namespace.
	StartProcess(ctx context.Context, spec ProcessSpec) (Proc, error)
	// StopProcesses sends SIGTERM to those of procs still running, SIGKILL
	// to what is left after grace, waits for them to exit, and reports how
	// many were running.
	StopProcesses(ctx context.Context, procs []Proc, grace time.Duration) (int, error)
	// Alive reports whether p still runs (and is the same process).
	Alive(p Proc) bool
}

// Proc identifies a process: its pid, and its start time (clock ticks after
// boot, field 22 of /proc/<pid>/stat) so that a reused pid is never
// mistaken for it. Start 0 means unknown.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start,omitempty"`
}

// ProcessSpec describes a process to start in a lab namespace.
type ProcessSpec struct {
	Namespace string
	Args      []string
	// Log receives stdout and stderr (appended; created if absent).
	Log string
	// Env is the environment; nil inherits the caller's.
	Env []string
}

// ErrNetemUnsupported is returned when WAN delay is asked for but the
// kernel has no tc netem qdisc (CONFIG_NET_SCH_NETEM). WAN loss alone falls
// back to iptables' statistic match on such kernels.
var ErrNetemUnsupported = errors.New("tc netem is not available in this kernel (CONFIG_NET_SCH_NETEM)")
