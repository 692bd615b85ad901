// Package nspair builds two network namespaces joined by one veth pair, the
// smallest real network for device tests and benchmarks. It shells out to
// ip(8); nothing is configured in the caller's own namespace.
package nspair

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Pair is two namespaces, A and B, joined by a veth whose ends are named
// Link in both namespaces and carry AddrA and AddrB.
type Pair struct {
	Prefix string // name prefix of everything made (starts with "wt")
	A, B   string // namespace names
	Link   string // veth end name inside each namespace
	AddrA  netip.Addr
	AddrB  netip.Addr
}

// Options configure New.
type Options struct {
	// MTU of the veth; 0 means 1500.
	MTU int
}

// Supported reports why namespaces cannot be used here ("" when they can).
func Supported() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs ip(8) from iproute2"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "needs /dev/net/tun"
	}
	return ""
}

// New creates the pair. Names start with "wt" and a random suffix so
// parallel tests never collide and leftovers are recognisable.
func New(ctx context.Context, o Options) (*Pair, error) {
	if o.MTU == 0 {
		o.MTU = 1500
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	prefix := "wt" + hex.EncodeToString(rnd[:])
	p := &Pair{
		Prefix: prefix, A: prefix + "a", B: prefix + "b", Link: "eth-u",
		AddrA: netip.MustParseAddr("192.0.2.1"), AddrB: netip.MustParseAddr("192.0.2.2"),
	}
	steps := [][]string{
		{"netns", "add", p.A},
		{"netns", "add", p.B},
		{"-n", p.A, "link", "add", p.Link, "mtu", strconv.Itoa(o.MTU), "type", "veth", "peer", "name", p.Link, "netns", p.B, "mtu", strconv.Itoa(o.MTU)},
		{"-n", p.A, "addr", "add", p.AddrA.String() + "/24", "dev", p.Link},
		{"-n", p.B, "addr", "add", p.AddrB.String() + "/24", "dev", p.Link},
		{"-n", p.A, "link", "set", p.Link, "up"},
		{"-n", p.B, "link", "set", p.Link, "up"},
		{"-n", p.A, "link", "set", "lo", "up"},
		{"-n", p.B, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := IP(ctx, s...); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// NSPath is the namespace's path for setns(2) users.
func NSPath(name string) string { return "/var/run/netns/" + name }

// Exec runs a command inside namespace ns and returns its combined output.
func Exec(ctx context.Context, ns string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("in netns %s: %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// IP runs ip(8) with args.
func IP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close kills what still runs in the namespaces and deletes them.
func (p *Pair) Close() error {
	var errs []error
	for _, ns := range []string{p.A, p.B} {
		if _, err := os.Stat(NSPath(ns)); err != nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					if proc, err := os.FindProcess(pid); err == nil {
						proc.Kill()
					}
				}
			}
		}
		if err := IP(context.Background(), "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	// Userspace WireGuard processes killed above leave their UAPI sockets.
	socks, _ := filepath.Glob("/var/run/wireguard/" + p.Prefix + "*.sock")
	for _, s := range socks {
		os.Remove(s)
	}
	return errors.Join(errs...)
}
