package firewall_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nspair"
	"github.com/weftnet/weft/pkg/firewall"
)

// netnsIPTables creates a namespace (deleted when the test ends) and a
// wrapper script that runs iptables inside it, and returns the namespace
// and go-iptables' handle on the script. No rule ever reaches the test's
// own namespace.
func netnsIPTables(ctx context.Context, t *testing.T) (string, firewall.Tables) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns test: needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns test: needs ip(8) from iproute2")
	}
	for _, tool := range []string{"iptables", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("netns test: needs %s", tool)
		}
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	ns := "wt" + hex.EncodeToString(rnd[:]) + "f"
	if err := nspair.IP(ctx, "netns", "add", ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nspair.IP(context.Background(), "netns", "del", ns); err != nil {
			t.Errorf("delete netns: %v", err)
		}
	})
	script := filepath.Join(t.TempDir(), "iptables")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec ip netns exec "+ns+" iptables \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ipt, err := firewall.OpenIPTables(firewall.IPTablesOptions{Path: script, Timeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	return ns, ipt
}

// TestIPTablesInNamespace reconciles real iptables (inside a namespace),
// checks iptables-save, repairs hand-made damage and cleans up.
func TestIPTablesInNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns, ipt := netnsIPTables(ctx, t)
	run := func(args ...string) string {
		t.Helper()
		out, err := nspair.Exec(ctx, ns, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// Another program's rules, as a CNI would have them.
	run("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.1.0.0/16", "!", "-d", "10.1.0.0/16", "-j", "MASQUERADE")
	run("iptables", "-A", "FORWARD", "-i", "cni0", "-j", "ACCEPT")

	r := newReconciler(t, ipt)
	want := twoRemotes(t)
	changes, err := r.Reconcile(ctx, want)
	if err != nil {
		t.Fatalf("Reconcile: %v\nchanges: %v", err, changes)
	}
	// Real iptables prints the rules exactly as planned: a second pass is a
	// no-op.
	if again, err := r.Reconcile(ctx, want); err != nil || len(again) != 0 {
		t.Fatalf("second Reconcile: %v, %v", again, err)
	}
	save := run("iptables-save")
	for _, line := range []string{
		":WEFT-FORWARD - [0:0]", ":WEFT-MSS - [0:0]", ":WEFT-POSTROUTING - [0:0]",
		"-A WEFT-FORWARD -s 10.2.0.0/16 -j ACCEPT",
		"-A WEFT-FORWARD -d 10.3.0.0/16 -j ACCEPT",
		"-A WEFT-MSS -d 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380",
		"-A WEFT-POSTROUTING -s 10.96.0.0/16 -d 10.3.0.0/16 -j ACCEPT",
		"-A POSTROUTING -s 10.1.0.0/16 ! -d 10.1.0.0/16 -j MASQUERADE",
	} {
		if !strings.Contains(save, line+"\n") {
			t.Errorf("iptables-save lacks %q", line)
		}
	}
	first := func(table, chain string) string {
		t.Helper()
		lines := strings.Split(run("iptables", "-t", table, "-S", chain), "\n")
		if len(lines) < 2 {
			return ""
		}
		return lines[1]
	}
	for _, j := range want.Jumps {
		if got, w := first(j.Table, j.From), "-A "+j.From+" -j "+j.To; got != w {
			t.Errorf("first rule of %s %s = %q; want %q\n%s", j.Table, j.From, got, w, save)
		}
	}

	// Damage by hand: a bogus rule in WEFT-FORWARD, the FORWARD jump gone.
	run("iptables", "-I", "WEFT-FORWARD", "2", "-s", "10.66.0.0/16", "-j", "DROP")
	run("iptables", "-D", "FORWARD", "-j", "WEFT-FORWARD")
	changes, err = r.Reconcile(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if got, w := changeText(changes), "delete rule -t filter WEFT-FORWARD 2: -s 10.66.0.0/16 -j DROP\ninsert rule -t filter FORWARD 1: -j WEFT-FORWARD\n"; got != w {
		t.Fatalf("repair changes:\n%s\nwant:\n%s", got, w)
	}
	if got := first("filter", "FORWARD"); got != "-A FORWARD -j WEFT-FORWARD" {
		t.Fatalf("first FORWARD rule after repair: %q", got)
	}
	if again, err := r.Reconcile(ctx, want); err != nil || len(again) != 0 {
		t.Fatalf("Reconcile after repair: %v, %v", again, err)
	}

	if _, err := r.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	save = run("iptables-save")
	if strings.Contains(save, "WEFT") {
		t.Fatalf("iptables-save after Cleanup still has weft's chains:\n%s", save)
	}
	for _, line := range []string{"-A POSTROUTING -s 10.1.0.0/16 ! -d 10.1.0.0/16 -j MASQUERADE", "-A FORWARD -i cni0 -j ACCEPT"} {
		if !strings.Contains(save, line) {
			t.Errorf("Cleanup removed a foreign rule %q", line)
		}
	}
}
