package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsx"
)

// netnsDir is where named namespaces are bind-mounted (as by ip-netns(8)
// and github.com/vishvananda/netns).
const netnsDir = "/run/netns"

// killWait bounds the wait for processes to die after SIGKILL.
const killWait = 5 * time.Second

// hostKernel is the real [Kernel].
type hostKernel struct {
	log *slog.Logger
}

// NewKernel returns the real Kernel: namespaces through
// github.com/vishvananda/netns, links, addresses, routes and qdiscs through
// netlink handles opened inside each namespace, sysctls and iptables from an
// OS thread switched into the namespace, processes through /proc and
// pidfds. It never configures the caller's own namespace. A nil logger
// discards.
func NewKernel(log *slog.Logger) Kernel {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &hostKernel{log: log}
}

func (k *hostKernel) Namespaces(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (k *hostKernel) DeleteNamespace(ctx context.Context, name string) error {
	path := filepath.Join(netnsDir, name)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: not a mount point (a stale file of a half-made namespace).
		return fmt.Errorf("delete namespace %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

func (k *hostKernel) Apply(ctx context.Context, s Step) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	switch s := s.(type) {
	case CreateNamespace:
		err = k.createNamespace(s.Name)
	case SetSysctl:
		err = inNamespace(s.NS, func() error { return writeSysctl(s.Key, s.Value) })
	case AddBridge:
		err = withHandle(s.NS, func(h *netlink.Handle) error {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: s.Name}}
			if err := h.LinkAdd(br); err != nil {
				return err
			}
			return setUp(h, s.Name, "")
		})
	case AddVeth:
		err = k.addVeth(s)
	case AddAddress:
		err = withHandle(s.NS, func(h *netlink.Handle) error {
			l, err := h.LinkByName(s.Dev)
			if err != nil {
				return fmt.Errorf("find %s: %w", s.Dev, err)
			}
			return h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(s.Prefix)})
		})
	case AddRoute:
		err = withHandle(s.NS, func(h *netlink.Handle) error {
			l, err := h.LinkByName(s.Dev)
			if err != nil {
				return fmt.Errorf("find %s: %w", s.Dev, err)
			}
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(s.Via.AsSlice())}
			if s.Dst.Bits() > 0 {
				r.Dst = ipNet(s.Dst)
			}
			return h.RouteAdd(r)
		})
	case AddNetem:
		err = k.addNetem(s)
	case AddMasquerade:
		err = inNamespace(s.NS, func() error { return addMasquerade(s) })
	default:
		err = fmt.Errorf("unknown step type %T", s)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	return nil
}

// createNamespace makes the named namespace from a locked OS thread and
// switches that thread back; should switching back fail, the thread stays
// locked and dies with its goroutine rather than serve others in the
// wrong namespace.
func (k *hostKernel) createNamespace(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		h, nerr := netns.NewNamed(name)
		if nerr == nil {
			h.Close()
		}
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore namespace: %w (after: %v)", err, nerr)
			return
		}
		runtime.UnlockOSThread()
		errc <- nerr
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("create: %w", err)
	}
	return withHandle(name, func(h *netlink.Handle) error { return setUp(h, "lo", "") })
}

func (k *hostKernel) addVeth(s AddVeth) error {
	peer, err := netns.GetFromName(s.PeerNS)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", s.PeerNS, err)
	}
	defer peer.Close()
	err = withHandle(s.NS, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: s.Name}, PeerName: s.PeerName, PeerNamespace: netlink.NsFd(int(peer))}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		return setUp(h, s.Name, s.Master)
	})
	if err != nil {
		return err
	}
	return withHandle(s.PeerNS, func(h *netlink.Handle) error { return setUp(h, s.PeerName, s.PeerMaster) })
}

func (k *hostKernel) addNetem(s AddNetem) error {
	err := withHandle(s.NS, func(h *netlink.Handle) error {
		l, err := h.LinkByName(s.Dev)
		if err != nil {
			return fmt.Errorf("find %s: %w", s.Dev, err)
		}
		q := netlink.NewNetem(netlink.QdiscAttrs{
			LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT,
		}, netlink.NetemQdiscAttrs{
			Latency: uint32(s.Delay.Microseconds()), Jitter: uint32(s.Jitter.Microseconds()), Loss: float32(s.Loss),
		})
		return h.QdiscAdd(q)
	})
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return err
	}
	// ENOENT: the kernel does not know the qdisc kind "netem".
	if s.Delay > 0 || s.Jitter > 0 {
		return ErrNetemUnsupported
	}
	k.log.Warn("tc netem unavailable; emulating WAN loss with iptables statistic", "namespace", s.NS, "port", s.Dev, "loss", s.Loss)
	return inNamespace(s.NS, func() error {
		// Bridged frames traverse iptables only with br_netfilter on; the
		// sysctl is per namespace.
		if err := writeSysctl("net.bridge.bridge-nf-call-iptables", "1"); err != nil {
			return err
		}
		ipt, err := iptables.New()
		if err != nil {
			return err
		}
		return ipt.AppendUnique("filter", "FORWARD", "-m", "physdev", "--physdev-out", s.Dev, "--physdev-is-bridged",
			"-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(s.Loss/100, 'f', 6, 64),
			"-j", "DROP")
	})
}

func addMasquerade(s AddMasquerade) error {
	ipt, err := iptables.New()
	if err != nil {
		return err
	}
	rules := []struct {
		table, chain string
		spec         []string
	}{
		{"nat", "POSTROUTING", []string{"-s", s.Source.String(), "-o", s.OutDev, "-j", "MASQUERADE"}},
		{"filter", "FORWARD", []string{"-i", s.OutDev, "-o", s.InDev, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}},
		{"filter", "FORWARD", []string{"-i", s.OutDev, "-o", s.InDev, "-j", "DROP"}},
	}
	for _, r := range rules {
		if err := ipt.AppendUnique(r.table, r.chain, r.spec...); err != nil {
			return fmt.Errorf("iptables -t %s -A %s %s: %w", r.table, r.chain, strings.Join(r.spec, " "), err)
		}
	}
	return nil
}

// withHandle runs fn with a netlink handle whose socket lives in namespace ns.
func withHandle(ns string, fn func(*netlink.Handle) error) error {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	defer h.Close()
	return fn(h)
}

// setUp attaches link name to master (if any) and sets it up.
func setUp(h *netlink.Handle, name, master string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if master != "" {
		m, err := h.LinkByName(master)
		if err != nil {
			return fmt.Errorf("find bridge %s: %w", master, err)
		}
		if err := h.LinkSetMaster(l, m); err != nil {
			return fmt.Errorf("attach %s to %s: %w", name, master, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// inNamespace runs fn inside the named namespace: files opened under
// /proc/sys/net and processes started by fn belong to it.
func inNamespace(name string, fn func() error) error { return netnsx.DoNamed(name, fn) }

// writeSysctl writes a dotted sysctl key of the calling thread's namespace.
func writeSysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// NamespaceProcesses finds processes whose network namespace is ns, as
// `ip netns pids` does: by comparing /proc/<pid>/ns/net with the
// namespace's bind mount.
func (k *hostKernel) NamespaceProcesses(ctx context.Context, ns string) ([]Proc, error) {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, ns), &want); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("processes in %s: %w", ns, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("processes in %s: %w", ns, err)
	}
	self := os.Getpid()
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil || st.Dev != want.Dev || st.Ino != want.Ino {
			continue
		}
		if start, _, ok := procStat(pid); ok {
			out = append(out, Proc{PID: pid, Start: start})
		}
	}
	return out, nil
}

// procStat reads a process's start time and state from /proc/<pid>/stat.
func procStat(pid int) (start uint64, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, f[0][0], true
}

func (k *hostKernel) Alive(p Proc) bool {
	start, state, ok := procStat(p.PID)
	return ok && state != 'Z' && state != 'X' && (p.Start == 0 || p.Start == start)
}

func (k *hostKernel) StartProcess(ctx context.Context, spec ProcessSpec) (Proc, error) {
	if len(spec.Args) == 0 {
		return Proc{}, errors.New("start process: no command")
	}
	if err := os.MkdirAll(filepath.Dir(spec.Log), 0o755); err != nil {
		return Proc{}, fmt.Errorf("start %s: log dir: %w", spec.Args[0], err)
	}
	f, err := os.OpenFile(spec.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, fmt.Errorf("start %s: log: %w", spec.Args[0], err)
	}
	defer f.Close()
	// ip netns exec execs the command in place: the pid is the command's.
	// No namespace means the host's (the lab's loopback proxy).
	cmd := exec.Command("ip", append([]string{"netns", "exec", spec.Namespace}, spec.Args...)...)
	if spec.Namespace == "" {
		cmd = exec.Command(spec.Args[0], spec.Args[1:]...)
	}
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, spec.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s in %s: %w", spec.Args[0], spec.Namespace, err)
	}
	p := Proc{PID: cmd.Process.Pid}
	p.Start, _, _ = procStat(p.PID)
	go cmd.Wait() // reap it whenever it exits
	return p, nil
}

func (k *hostKernel) StopProcesses(ctx context.Context, procs []Proc, grace time.Duration) (int, error) {
	var fds []pidfd
	defer func() {
		for _, f := range fds {
			unix.Close(f.fd)
		}
	}()
	for _, p := range procs {
		fd, err := unix.PidfdOpen(p.PID, 0)
		if err != nil {
			continue // gone
		}
		// The pidfd pins the process it was opened for; checking the start
		// time after opening it rules out a reused pid.
		if !k.Alive(p) {
			unix.Close(fd)
			continue
		}
		fds = append(fds, pidfd{p, fd})
	}
	for _, f := range fds {
		k.log.Debug("stopping process", "pid", f.p.PID)
		_ = unix.PidfdSendSignal(f.fd, unix.SIGTERM, nil, 0)
	}
	left := waitExit(ctx, fds, grace)
	for _, f := range left {
		k.log.Warn("process ignored SIGTERM; killing it", "pid", f.p.PID, "grace", grace)
		_ = unix.PidfdSendSignal(f.fd, unix.SIGKILL, nil, 0)
	}
	if left = waitExit(context.WithoutCancel(ctx), left, killWait); len(left) > 0 {
		var pids []string
		for _, f := range left {
			pids = append(pids, strconv.Itoa(f.p.PID))
		}
		return len(fds), fmt.Errorf("processes %s still running after SIGKILL", strings.Join(pids, ", "))
	}
	return len(fds), nil
}

type pidfd struct {
	p  Proc
	fd int
}

// waitExit waits until every process has exited (its pidfd turns
// readable) or the timeout passes, and returns those still running.
func waitExit(ctx context.Context, fds []pidfd, timeout time.Duration) []pidfd {
	deadline := time.Now().Add(timeout)
	left := fds
	for len(left) > 0 {
		wait := time.Until(deadline)
		if wait <= 0 || ctx.Err() != nil {
			break
		}
		if wait > 100*time.Millisecond {
			wait = 100 * time.Millisecond // wake up to notice ctx
		}
		pfds := make([]unix.PollFd, len(left))
		for i, f := range left {
			pfds[i] = unix.PollFd{Fd: int32(f.fd), Events: unix.POLLIN}
		}
		if _, err := unix.Poll(pfds, int(wait.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
		var still []pidfd
		for i, f := range left {
			if pfds[i].Revents == 0 {
				still = append(still, f)
			}
		}
		left = still
	}
	return left
}
