package firewall_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/firewall/firewalltest"
	"github.com/weftnet/weft/pkg/netplan"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func desired(t *testing.T, mtu int, remotes ...netplan.Remote) netplan.Firewall {
	t.Helper()
	st, err := netplan.Plan(netplan.NodeInput{
		Node:           "n1",
		NodeIP:         netip.MustParseAddr("192.168.10.12"),
		GatewayIP:      netip.MustParseAddr("192.168.10.11"),
		PodNetworkAddr: netip.MustParseAddr("10.1.2.1"),
		LocalCIDRs:     pfx("10.1.0.0/16", "10.96.0.0/16"),
		Remotes:        remotes,
		TunnelMTU:      mtu,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st.Firewall
}

func twoRemotes(t *testing.T) netplan.Firewall {
	return desired(t, 1420,
		netplan.Remote{ClusterID: "east", Subnets: pfx("10.2.0.0/16")},
		netplan.Remote{ClusterID: "west", Subnets: pfx("10.3.0.0/16")})
}

// withForeign returns a fake holding other programs' rules and chains,
// including globalnet's chain, which weft's route agent does not own.
func withForeign(t *testing.T) *firewalltest.Tables {
	t.Helper()
	ft := firewalltest.New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ft.NewChain("filter", "KUBE-FORWARD"))
	must(ft.Append("filter", "FORWARD", "-j", "KUBE-FORWARD"))
	must(ft.Append("filter", "FORWARD", "-i", "cni0", "-j", "ACCEPT"))
	must(ft.Append("nat", "POSTROUTING", "-s", "10.1.0.0/16", "!", "-d", "10.1.0.0/16", "-j", "MASQUERADE"))
	must(ft.NewChain("nat", "WEFT-GN-EGRESS"))
	must(ft.Append("nat", "WEFT-GN-EGRESS", "-s", "10.1.0.0/16", "-j", "SNAT", "--to-source", "242.0.0.1"))
	must(ft.Append("nat", "POSTROUTING", "-j", "WEFT-GN-EGRESS"))
	return ft
}

// foreignText is the fake's state without weft's chains and jumps.
func foreignText(ft *firewalltest.Tables) string {
	var keep []string
	for _, l := range strings.Split(ft.String(), "\n") {
		if strings.Contains(l, "WEFT-") && !strings.Contains(l, "WEFT-GN-") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func newReconciler(t *testing.T, tables firewall.Tables) *firewall.Reconciler {
	t.Helper()
	r, err := firewall.New(firewall.Options{Tables: tables})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// converge reconciles want, checks the result and that a second pass is a
// no-op.
func converge(t *testing.T, ft *firewalltest.Tables, r *firewall.Reconciler, want netplan.Firewall) []firewall.Change {
	t.Helper()
	changes, err := r.Reconcile(context.Background(), want)
	if err != nil {
		t.Fatalf("Reconcile: %v\nchanges: %v", err, changes)
	}
	checkState(t, ft, want)
	writes := ft.Writes()
	if again, err := r.Reconcile(context.Background(), want); err != nil || len(again) != 0 || ft.Writes() != writes {
		t.Fatalf("second Reconcile: %v, %v; want no change", again, err)
	}
	return changes
}

// checkState verifies weft's chains hold exactly want's rules and each jump
// is the first rule of its built-in chain, and no other rule jumps there.
func checkState(t *testing.T, ft *firewalltest.Tables, want netplan.Firewall) {
	t.Helper()
	for _, c := range want.Chains {
		var rules []string
		for _, r := range c.Rules {
			rules = append(rules, strings.Join(r, " "))
		}
		if got := ft.Rules(c.Table, c.Name); !slices.Equal(got, rules) {
			t.Fatalf("chain %s %s:\n%s\nwant:\n%s\nstate:\n%s", c.Table, c.Name, strings.Join(got, "\n"), strings.Join(rules, "\n"), ft)
		}
	}
	for _, j := range want.Jumps {
		rules := ft.Rules(j.Table, j.From)
		if len(rules) == 0 || rules[0] != "-j "+j.To {
			t.Fatalf("%s %s does not start with the jump to %s:\n%s", j.Table, j.From, j.To, ft)
		}
		for _, b := range firewall.BuiltinChains(j.Table) {
			for i, r := range ft.Rules(j.Table, b) {
				if strings.HasSuffix(r, "-j "+j.To) && (b != j.From || i != 0) {
					t.Fatalf("stray jump to %s in %s %s at %d:\n%s", j.To, j.Table, b, i+1, ft)
				}
			}
		}
	}
}

func changeText(cs []firewall.Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

func TestReconcileFresh(t *testing.T) {
	ft := withForeign(t)
	foreign := foreignText(ft)
	r := newReconciler(t, ft)
	converge(t, ft, r, twoRemotes(t))
	want := `*filter
:FORWARD ACCEPT
:INPUT ACCEPT
:KUBE-FORWARD -
:OUTPUT ACCEPT
:WEFT-FORWARD -
-A FORWARD -j WEFT-FORWARD
-A FORWARD -j KUBE-FORWARD
-A FORWARD -i cni0 -j ACCEPT
-A WEFT-FORWARD -s 10.2.0.0/16 -j ACCEPT
-A WEFT-FORWARD -d 10.2.0.0/16 -j ACCEPT
-A WEFT-FORWARD -s 10.3.0.0/16 -j ACCEPT
-A WEFT-FORWARD -d 10.3.0.0/16 -j ACCEPT
COMMIT
*mangle
:FORWARD ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:PREROUTING ACCEPT
:WEFT-MSS -
-A FORWARD -j WEFT-MSS
-A WEFT-MSS -s 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
-A WEFT-MSS -d 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
-A WEFT-MSS -s 10.3.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
-A WEFT-MSS -d 10.3.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
COMMIT
*nat
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:PREROUTING ACCEPT
:WEFT-GN-EGRESS -
:WEFT-POSTROUTING -
-A POSTROUTING -j WEFT-POSTROUTING
-A POSTROUTING -s 10.1.0.0/16 ! -d 10.1.0.0/16 -j MASQUERADE
-A POSTROUTING -j WEFT-GN-EGRESS
-A WEFT-GN-EGRESS -s 10.1.0.0/16 -j SNAT --to-source 242.0.0.1
-A WEFT-POSTROUTING -s 10.1.0.0/16 -d 10.2.0.0/16 -j ACCEPT
-A WEFT-POSTROUTING -s 10.1.0.0/16 -d 10.3.0.0/16 -j ACCEPT
-A WEFT-POSTROUTING -s 10.96.0.0/16 -d 10.2.0.0/16 -j ACCEPT
-A WEFT-POSTROUTING -s 10.96.0.0/16 -d 10.3.0.0/16 -j ACCEPT
COMMIT
*raw
:OUTPUT ACCEPT
:PREROUTING ACCEPT
COMMIT
`
	if got := ft.String(); got != want {
		t.Fatalf("state:\n%s\nwant:\n%s", got, want)
	}
	if got := foreignText(ft); got != foreign {
		t.Fatalf("foreign state changed:\n%s\nwas:\n%s", got, foreign)
	}
	// A restarted agent adopts what is there: nothing flushed, no change.
	r2 := newReconciler(t, ft)
	if cs, err := r2.Reconcile(context.Background(), twoRemotes(t)); err != nil || len(cs) != 0 {
		t.Fatalf("restart: %v, %v", cs, err)
	}
}

func TestReconcileRepairs(t *testing.T) {
	want := twoRemotes(t)
	tests := []struct {
		name    string
		mutate  func(ft *firewalltest.Tables) error
		changes string
	}{
		{"bogus rule on top", func(ft *firewalltest.Tables) error {
			return ft.Insert("filter", "WEFT-FORWARD", 1, "-s", "10.66.0.0/16", "-j", "DROP")
		}, "delete rule -t filter WEFT-FORWARD 1: -s 10.66.0.0/16 -j DROP\n"},
		{"bogus rule in the middle and jump deleted", func(ft *firewalltest.Tables) error {
			if err := ft.Insert("filter", "WEFT-FORWARD", 3, "-j", "DROP"); err != nil {
				return err
			}
			return ft.DeleteById("filter", "FORWARD", 1)
		}, "delete rule -t filter WEFT-FORWARD 3: -j DROP\ninsert rule -t filter FORWARD 1: -j WEFT-FORWARD\n"},
		{"rule deleted", func(ft *firewalltest.Tables) error {
			return ft.DeleteById("nat", "WEFT-POSTROUTING", 2)
		}, "insert rule -t nat WEFT-POSTROUTING 2: -s 10.1.0.0/16 -d 10.3.0.0/16 -j ACCEPT\n"},
		{"last rule deleted", func(ft *firewalltest.Tables) error {
			return ft.DeleteById("nat", "WEFT-POSTROUTING", 4)
		}, "add rule -t nat WEFT-POSTROUTING 4: -s 10.96.0.0/16 -d 10.3.0.0/16 -j ACCEPT\n"},
		{"rules swapped", func(ft *firewalltest.Tables) error {
			if err := ft.DeleteById("filter", "WEFT-FORWARD", 1); err != nil {
				return err
			}
			return ft.Insert("filter", "WEFT-FORWARD", 2, "-s", "10.2.0.0/16", "-j", "ACCEPT")
		}, "insert rule -t filter WEFT-FORWARD 3: -d 10.2.0.0/16 -j ACCEPT\ndelete rule -t filter WEFT-FORWARD 1: -d 10.2.0.0/16 -j ACCEPT\n"},
		{"jump moved down", func(ft *firewalltest.Tables) error {
			if err := ft.DeleteById("nat", "POSTROUTING", 1); err != nil {
				return err
			}
			return ft.Append("nat", "POSTROUTING", "-j", "WEFT-POSTROUTING")
		}, "insert rule -t nat POSTROUTING 1: -j WEFT-POSTROUTING\ndelete rule -t nat POSTROUTING 4: -j WEFT-POSTROUTING\n"},
		{"something inserted above the jump", func(ft *firewalltest.Tables) error {
			return ft.Insert("filter", "FORWARD", 1, "-j", "KUBE-FORWARD")
		}, "insert rule -t filter FORWARD 1: -j WEFT-FORWARD\ndelete rule -t filter FORWARD 3: -j WEFT-FORWARD\n"},
		{"duplicate jump", func(ft *firewalltest.Tables) error {
			return ft.Insert("mangle", "FORWARD", 1, "-j", "WEFT-MSS")
		}, "delete rule -t mangle FORWARD 2: -j WEFT-MSS\n"},
		{"stray jump from another built-in chain", func(ft *firewalltest.Tables) error {
			return ft.Append("mangle", "POSTROUTING", "-o", "eth0", "-j", "WEFT-MSS")
		}, "delete rule -t mangle POSTROUTING 1: -o eth0 -j WEFT-MSS\n"},
		{"chain flushed", func(ft *firewalltest.Tables) error {
			return ft.ClearChain("mangle", "WEFT-MSS")
		}, `add rule -t mangle WEFT-MSS 1: -s 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
add rule -t mangle WEFT-MSS 2: -d 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
add rule -t mangle WEFT-MSS 3: -s 10.3.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
add rule -t mangle WEFT-MSS 4: -d 10.3.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380
`},
		{"chain and jump deleted", func(ft *firewalltest.Tables) error {
			if err := ft.DeleteById("filter", "FORWARD", 1); err != nil {
				return err
			}
			if err := ft.ClearChain("filter", "WEFT-FORWARD"); err != nil {
				return err
			}
			return ft.DeleteChain("filter", "WEFT-FORWARD")
		}, `add chain filter WEFT-FORWARD
add rule -t filter WEFT-FORWARD 1: -s 10.2.0.0/16 -j ACCEPT
add rule -t filter WEFT-FORWARD 2: -d 10.2.0.0/16 -j ACCEPT
add rule -t filter WEFT-FORWARD 3: -s 10.3.0.0/16 -j ACCEPT
add rule -t filter WEFT-FORWARD 4: -d 10.3.0.0/16 -j ACCEPT
insert rule -t filter FORWARD 1: -j WEFT-FORWARD
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := withForeign(t)
			r := newReconciler(t, ft)
			converge(t, ft, r, want)
			if err := tt.mutate(ft); err != nil {
				t.Fatal(err)
			}
			foreign := foreignText(ft)
			if got := changeText(converge(t, ft, r, want)); got != tt.changes {
				t.Fatalf("changes:\n%s\nwant:\n%s", got, tt.changes)
			}
			if got := foreignText(ft); got != foreign {
				t.Fatalf("foreign state changed:\n%s\nwas:\n%s", got, foreign)
			}
		})
	}
}

func TestCleanup(t *testing.T) {
	ft := withForeign(t)
	before := ft.String()
	r := newReconciler(t, ft)
	converge(t, ft, r, twoRemotes(t))
	// A stray second jump is removed as well.
	if err := ft.Append("filter", "INPUT", "-j", "WEFT-FORWARD"); err != nil {
		t.Fatal(err)
	}
	changes, err := r.Cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := `delete rule -t filter INPUT 1: -j WEFT-FORWARD
delete rule -t filter FORWARD 1: -j WEFT-FORWARD
delete rule -t mangle FORWARD 1: -j WEFT-MSS
delete rule -t nat POSTROUTING 1: -j WEFT-POSTROUTING
delete chain filter WEFT-FORWARD
delete chain mangle WEFT-MSS
delete chain nat WEFT-POSTROUTING
`
	if got := changeText(changes); got != want {
		t.Fatalf("Cleanup changes:\n%s\nwant:\n%s", got, want)
	}
	if got := ft.String(); got != before {
		t.Fatalf("after Cleanup:\n%s\nwant the state before weft:\n%s", got, before)
	}
	if again, err := r.Cleanup(context.Background()); err != nil || len(again) != 0 {
		t.Fatalf("second Cleanup: %v, %v", again, err)
	}
}

func TestReconcileErrors(t *testing.T) {
	ctx := context.Background()
	ft := firewalltest.New()
	r := newReconciler(t, ft)
	bad := twoRemotes(t)
	bad.Chains = append(bad.Chains, netplan.Chain{Table: "nat", Name: "WEFT-GN-EGRESS"})
	if _, err := r.Reconcile(ctx, bad); err == nil || !strings.Contains(err.Error(), "nat WEFT-GN-EGRESS is not one this reconciler owns") {
		t.Fatalf("err = %v", err)
	}
	bad = twoRemotes(t)
	bad.Jumps = append(bad.Jumps, netplan.Jump{Table: "nat", From: "WEFT-POSTROUTING", To: "WEFT-POSTROUTING"})
	if _, err := r.Reconcile(ctx, bad); err == nil || !strings.Contains(err.Error(), "source is not a built-in chain") {
		t.Fatalf("err = %v", err)
	}
	if ft.Writes() != 0 {
		t.Fatal("a refused state was written")
	}

	ft.Fail("Append", errors.New("xtables lock"))
	_, err := r.Reconcile(ctx, twoRemotes(t))
	if err == nil || !strings.Contains(err.Error(), "add rule -t filter WEFT-FORWARD 1: -s 10.2.0.0/16 -j ACCEPT: xtables lock") {
		t.Fatalf("err = %v", err)
	}
	ft.Fail("Append", nil)
	converge(t, ft, r, twoRemotes(t))

	if _, err := firewall.New(firewall.Options{}); err == nil {
		t.Fatal("New accepted nil Tables")
	}
	if _, err := firewall.New(firewall.Options{Tables: ft, Chains: []firewall.ChainRef{{Table: "filter", Name: "FORWARD"}}}); err == nil {
		t.Fatal("New accepted a built-in chain as owned")
	}
}

// guard wraps the fake and, after every deletion, checks that the rules
// that are desired both before and after the pass are all still present:
// add before delete.
type guard struct {
	*firewalltest.Tables
	t       *testing.T
	stay    map[[2]string][]string // table, chain -> rules
	guarded int                    // deletions made while rules had to stay
}

func (g *guard) DeleteById(table, chain string, id int) error { //nolint:revive,stylecheck // go-iptables' name
	if err := g.Tables.DeleteById(table, chain, id); err != nil {
		return err
	}
	have := g.Rules(table, chain)
	if len(g.stay[[2]string{table, chain}]) > 0 {
		g.guarded++
	}
	for _, r := range g.stay[[2]string{table, chain}] {
		if !slices.Contains(have, r) {
			g.t.Fatalf("rule %q absent from %s %s during the pass", r, table, chain)
		}
	}
	return nil
}

// TestRandomTransitions drives the reconciler through random desired states
// in random order, with random interference; after each pass weft's chains
// hold exactly the desired rules, jumps are first, foreign rules are
// untouched, a second pass is a no-op, and rules desired on both sides of a
// transition are never absent.
func TestRandomTransitions(t *testing.T) {
	guarded := 0
	defer func() {
		if guarded == 0 && !t.Failed() {
			t.Error("no deletion happened while rules had to stay; the add-before-delete check never ran")
		}
	}()
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xf17e))
			ft := withForeign(t)
			g := &guard{Tables: ft, t: t}
			r := newReconciler(t, g)
			foreign := foreignText(ft)
			var prev netplan.Firewall
			for range 30 {
				want := randomFirewall(t, rng)
				g.stay = map[[2]string][]string{}
				for _, c := range want.Chains {
					for _, pc := range prev.Chains {
						if pc.Table != c.Table || pc.Name != c.Name {
							continue
						}
						for _, rule := range c.Rules {
							if slices.ContainsFunc(pc.Rules, func(o []string) bool { return slices.Equal(o, rule) }) {
								k := [2]string{c.Table, c.Name}
								g.stay[k] = append(g.stay[k], strings.Join(rule, " "))
							}
						}
					}
				}
				interfere(rng, ft)
				// Interference may remove kept rules; only guard what is
				// actually there before the pass.
				for k, rules := range g.stay {
					have := ft.Rules(k[0], k[1])
					g.stay[k] = slices.DeleteFunc(rules, func(r string) bool { return !slices.Contains(have, r) })
				}
				converge(t, ft, r, want)
				if got := foreignText(ft); got != foreign {
					t.Fatalf("foreign state changed:\n%s\nwas:\n%s", got, foreign)
				}
				prev = want
			}
			guarded += g.guarded
			g.stay = nil
			if _, err := r.Cleanup(context.Background()); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(strings.ReplaceAll(ft.String(), "WEFT-GN-", ""), "WEFT-") {
				t.Fatalf("weft left:\n%s", ft)
			}
		})
	}
}

func randomFirewall(t *testing.T, rng *rand.Rand) netplan.Firewall {
	var remotes []netplan.Remote
	for c := range rng.IntN(4) {
		var subnets []netip.Prefix
		for s := range 5 {
			if rng.IntN(2) == 0 {
				subnets = append(subnets, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 10+c, s)))
			}
		}
		remotes = append(remotes, netplan.Remote{ClusterID: fmt.Sprint("c", c), Subnets: subnets})
	}
	return desired(t, []int{1380, 1420}[rng.IntN(2)], remotes...)
}

func interfere(rng *rand.Rand, ft *firewalltest.Tables) {
	chains := firewall.DefaultChains()
	for range rng.IntN(3) {
		c := chains[rng.IntN(len(chains))]
		n := len(ft.Rules(c.Table, c.Name))
		switch rng.IntN(5) {
		case 0:
			if n > 0 {
				ft.DeleteById(c.Table, c.Name, 1+rng.IntN(n))
			}
		case 1:
			ft.Insert(c.Table, c.Name, 1+rng.IntN(n+1), "-s", "10.200.0.0/16", "-j", "DROP")
		case 2:
			if from := map[string]string{"filter": "FORWARD", "mangle": "FORWARD", "nat": "POSTROUTING"}[c.Table]; from != "" {
				if rules := ft.Rules(c.Table, from); len(rules) > 0 && rules[0] == "-j "+c.Name {
					ft.DeleteById(c.Table, from, 1)
					ft.Append(c.Table, from, "-j", c.Name)
				}
			}
		case 3:
			ft.Insert(c.Table, firewall.BuiltinChains(c.Table)[0], 1, "-j", c.Name)
		case 4:
			if n > 1 {
				ft.Append(c.Table, c.Name, strings.Fields(ft.Rules(c.Table, c.Name)[0])...) // a duplicate
			}
		}
	}
}
