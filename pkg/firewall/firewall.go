package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"

	"github.com/weftnet/weft/pkg/netplan"
)

// Tables is the iptables access a [Reconciler] needs, for one address
// family. *iptables.IPTables implements it.
type Tables interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	// List returns the chain as `iptables -S <chain>` prints it: a "-P" or
	// "-N" line, then one "-A <chain> ..." line per rule.
	List(table, chain string) ([]string, error)
	Append(table, chain string, rulespec ...string) error
	// Insert puts the rule at position pos (1-based).
	Insert(table, chain string, pos int, rulespec ...string) error
	// DeleteById deletes the rule at position id (1-based). (The name is
	// go-iptables'.)
	DeleteById(table, chain string, id int) error //nolint:revive,stylecheck // go-iptables' name
	// ClearChain flushes the chain, creating it when missing.
	ClearChain(table, chain string) error
	DeleteChain(table, chain string) error
}

var _ Tables = (*iptables.IPTables)(nil)

// IPTablesOptions configure [OpenIPTables].
type IPTablesOptions struct {
	// Path of the iptables binary; "" finds "iptables" in $PATH. Tests use a
	// wrapper script that runs iptables inside a network namespace.
	Path string
	// Timeout is the xtables lock wait in seconds; 0 waits indefinitely.
	Timeout int
}

// OpenIPTables returns go-iptables' IPv4 handle. It runs the binary once
// (`--version`) to learn its features.
func OpenIPTables(o IPTablesOptions) (*iptables.IPTables, error) {
	var ipt *iptables.IPTables
	var err error
	if o.Path != "" {
		ipt, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(o.Timeout), iptables.Path(o.Path))
	} else {
		ipt, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(o.Timeout))
	}
	if err != nil {
		return nil, fmt.Errorf("firewall: iptables: %w", err)
	}
	return ipt, nil
}

// ChainRef names a chain in a table.
type ChainRef struct {
	Table string
	Name  string
}

func (c ChainRef) String() string { return c.Table + " " + c.Name }

// DefaultChains are the chains netplan plans.
func DefaultChains() []ChainRef {
	return []ChainRef{
		{Table: "filter", Name: netplan.ChainForward},
		{Table: "mangle", Name: netplan.ChainMSS},
		{Table: "nat", Name: netplan.ChainPostrouting},
	}
}

// BuiltinChains returns the built-in chains of an iptables table (nil for
// an unknown table).
func BuiltinChains(table string) []string {
	switch table {
	case "filter":
		return []string{"INPUT", "FORWARD", "OUTPUT"}
	case "nat":
		return []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}
	case "mangle":
		return []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
	case "raw":
		return []string{"PREROUTING", "OUTPUT"}
	case "security":
		return []string{"INPUT", "FORWARD", "OUTPUT"}
	}
	return nil
}

// Options configure a [Reconciler].
type Options struct {
	// Tables is where changes go (required).
	Tables Tables
	// Chains are the chains weft owns; nil means [DefaultChains].
	Chains []ChainRef
	// Logger receives one Info record per change; nil discards.
	Logger *slog.Logger
}

// Reconciler makes iptables match a desired [netplan.Firewall]. It is safe
// for concurrent use; calls are serialised.
type Reconciler struct {
	mu     sync.Mutex
	t      Tables
	chains []ChainRef
	log    *slog.Logger
}

// New returns a Reconciler. It does no I/O.
func New(o Options) (*Reconciler, error) {
	if o.Tables == nil {
		return nil, errors.New("firewall: Options.Tables is required")
	}
	chains := o.Chains
	if chains == nil {
		chains = DefaultChains()
	}
	for _, c := range chains {
		if BuiltinChains(c.Table) == nil {
			return nil, fmt.Errorf("firewall: chain %s: unknown table %q", c.Name, c.Table)
		}
		if c.Name == "" || slices.Contains(BuiltinChains(c.Table), c.Name) {
			return nil, fmt.Errorf("firewall: chain %q in %s: not a user chain", c.Name, c.Table)
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{t: o.Tables, chains: slices.Clone(chains), log: log}, nil
}

// Change is one modification a Reconciler made.
type Change struct {
	// Op is "add", "insert" or "delete".
	Op string
	// Object names what changed, iptables style: "chain nat WEFT-POSTROUTING",
	// "rule -t filter WEFT-FORWARD 2: -s 10.2.0.0/16 -j ACCEPT".
	Object string
}

// String renders "op object".
func (c Change) String() string { return c.Op + " " + c.Object }

type pass struct {
	ctx     context.Context
	log     *slog.Logger
	changes []Change
	errs    []error
}

func (p *pass) do(op, object string, fn func() error) bool {
	if p.ctx.Err() != nil {
		return false
	}
	if err := fn(); err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s %s: %w", op, object, err))
		return false
	}
	p.changes = append(p.changes, Change{Op: op, Object: object})
	p.log.Info("firewall change", "op", op, "object", object)
	return true
}

func (p *pass) fail(what string, err error) { p.errs = append(p.errs, fmt.Errorf("%s: %w", what, err)) }

func (p *pass) result() ([]Change, error) {
	if err := p.ctx.Err(); err != nil {
		p.errs = append(p.errs, err)
	}
	if len(p.errs) == 0 {
		return p.changes, nil
	}
	return p.changes, fmt.Errorf("firewall: %w", errors.Join(p.errs...))
}

// Reconcile makes weft's chains hold exactly want's rules, in order, and
// puts want's jumps at the top of their built-in chains; jumps into owned
// chains that want does not list are removed. It returns the changes made;
// a second call makes none. It carries on past failures and returns them
// joined.
func (r *Reconciler) Reconcile(ctx context.Context, want netplan.Firewall) ([]Change, error) {
	if err := r.check(want); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &pass{ctx: ctx, log: r.log}
	ready := map[ChainRef]bool{}
	for _, c := range want.Chains {
		ready[ChainRef{c.Table, c.Name}] = r.syncChain(p, c)
	}
	var tables []string
	for _, c := range r.chains {
		if !slices.Contains(tables, c.Table) {
			tables = append(tables, c.Table)
		}
	}
	for _, table := range tables {
		for _, from := range BuiltinChains(table) {
			var jumps []netplan.Jump
			for _, j := range want.Jumps {
				if j.Table == table && j.From == from && ready[ChainRef{j.Table, j.To}] {
					jumps = append(jumps, j)
				}
			}
			r.syncJumps(p, table, from, jumps)
		}
	}
	return p.result()
}

// check verifies want names only owned chains and consistent jumps.
func (r *Reconciler) check(want netplan.Firewall) error {
	var seen []ChainRef
	for _, c := range want.Chains {
		ref := ChainRef{c.Table, c.Name}
		if !slices.Contains(r.chains, ref) {
			return fmt.Errorf("firewall: chain %s is not one this reconciler owns (%v)", ref, r.chains)
		}
		if slices.Contains(seen, ref) {
			return fmt.Errorf("firewall: chain %s listed twice", ref)
		}
		seen = append(seen, ref)
	}
	for _, j := range want.Jumps {
		if !slices.Contains(seen, ChainRef{j.Table, j.To}) {
			return fmt.Errorf("firewall: jump from %s %s to %s: target is not a desired chain", j.Table, j.From, j.To)
		}
		if !slices.Contains(BuiltinChains(j.Table), j.From) {
			return fmt.Errorf("firewall: jump from %s %s to %s: source is not a built-in chain", j.Table, j.From, j.To)
		}
	}
	return nil
}

// rules lists the rules of a chain as normalised rulespec text.
func (r *Reconciler) rules(table, chain string) ([]string, error) {
	lines, err := r.t.List(table, chain)
	if err != nil {
		return nil, err
	}
	prefix := "-A " + chain + " "
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, normalize(l[len(prefix):]))
		}
	}
	return out, nil
}

// normalize collapses whitespace.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// specText renders a rulespec the way `iptables -S` does (quoting
// arguments with spaces).
func specText(spec []string) string {
	parts := make([]string, len(spec))
	for i, s := range spec {
		if strings.ContainsAny(s, " \t") {
			s = `"` + s + `"`
		}
		parts[i] = s
	}
	return normalize(strings.Join(parts, " "))
}

// syncChain makes chain c hold exactly c.Rules. It reports whether the
// chain exists afterwards.
func (r *Reconciler) syncChain(p *pass, c netplan.Chain) bool {
	obj := "chain " + c.Table + " " + c.Name
	ok, err := r.t.ChainExists(c.Table, c.Name)
	if err != nil {
		p.fail("check "+obj, err)
		return false
	}
	if !ok && !p.do("add", obj, func() error { return r.t.NewChain(c.Table, c.Name) }) {
		return false
	}
	cur, err := r.rules(c.Table, c.Name)
	if err != nil {
		p.fail("list "+obj, err)
		return true
	}
	want := make([]string, len(c.Rules))
	for i, s := range c.Rules {
		want[i] = specText(s)
	}
	if slices.Equal(cur, want) {
		return true
	}

	// Keep the longest common subsequence; insert the rest of want around
	// it, then delete what is left over from cur.
	keepCur, keepWant := lcs(cur, want)
	type entry struct {
		text string
		keep bool
	}
	sim := make([]entry, len(cur))
	for i, t := range cur {
		sim[i] = entry{t, keepCur[i] >= 0}
	}
	pos := make([]int, len(want)) // want index -> sim index of matched rules
	for i, j := range keepCur {
		if j >= 0 {
			pos[j] = i
		}
	}
	prev := -1
	for j, text := range want {
		if keepWant[j] {
			prev = pos[j]
			continue
		}
		at := prev + 1
		spec := c.Rules[j]
		var ok bool
		if at == len(sim) {
			ok = p.do("add", fmt.Sprintf("rule -t %s %s %d: %s", c.Table, c.Name, at+1, text), func() error {
				return r.t.Append(c.Table, c.Name, spec...)
			})
		} else {
			ok = p.do("insert", fmt.Sprintf("rule -t %s %s %d: %s", c.Table, c.Name, at+1, text), func() error {
				return r.t.Insert(c.Table, c.Name, at+1, spec...)
			})
		}
		if !ok {
			return true // positions are now unknown; the next pass retries
		}
		sim = slices.Insert(sim, at, entry{text, true})
		for k := range pos {
			if keepWant[k] && pos[k] >= at {
				pos[k]++
			}
		}
		prev = at
	}
	for i := len(sim) - 1; i >= 0; i-- {
		if sim[i].keep {
			continue
		}
		if !p.do("delete", fmt.Sprintf("rule -t %s %s %d: %s", c.Table, c.Name, i+1, sim[i].text), func() error {
			return r.t.DeleteById(c.Table, c.Name, i+1)
		}) {
			return true
		}
	}
	return true
}

// lcs returns, for the longest common subsequence of a and b, the index in
// b each element of a is matched with (-1: unmatched) and which elements of
// b are matched.
func lcs(a, b []string) ([]int, []bool) {
	n, m := len(a), len(b)
	dp := make([][]int, n+1)
	for i := range dp {
		dp[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	ma, mb := make([]int, n), make([]bool, m)
	for i := range ma {
		ma[i] = -1
	}
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case a[i] == b[j]:
			ma[i], mb[j] = j, true
			i++
			j++
		case dp[i+1][j] >= dp[i][j+1]:
			i++
		default:
			j++
		}
	}
	return ma, mb
}

// targets returns the owned chain a rule jumps or goes to, if any.
func (r *Reconciler) targets(table, rule string) (string, bool) {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") &&
			slices.Contains(r.chains, ChainRef{table, f[i+1]}) {
			return f[i+1], true
		}
	}
	return "", false
}

// syncJumps makes the first len(jumps) rules of built-in chain from be
// exactly jumps, in order, with no other rule jumping to an owned chain.
func (r *Reconciler) syncJumps(p *pass, table, from string, jumps []netplan.Jump) {
	if p.ctx.Err() != nil {
		return
	}
	cur, err := r.rules(table, from)
	if err != nil {
		p.fail("list chain "+table+" "+from, err)
		return
	}
	want := make([]string, len(jumps))
	for i, j := range jumps {
		want[i] = specText(j.Spec())
	}
	var stale []int // 0-based positions in cur of rules into owned chains
	for i, rule := range cur {
		if _, ok := r.targets(table, rule); ok && (i >= len(want) || rule != want[i]) {
			stale = append(stale, i)
		}
	}
	inPlace := len(cur) >= len(want) && slices.Equal(cur[:len(want)], want)
	if inPlace && len(stale) == 0 {
		return
	}
	shift := 0
	if !inPlace {
		for i, j := range jumps {
			if !p.do("insert", fmt.Sprintf("rule -t %s %s %d: %s", table, from, i+1, want[i]), func() error {
				return r.t.Insert(table, from, i+1, j.Spec()...)
			}) {
				return
			}
		}
		shift = len(jumps)
		// The old copies at the top are stale now too.
		for i := range min(len(want), len(cur)) {
			if _, ok := r.targets(table, cur[i]); ok && !slices.Contains(stale, i) {
				stale = append(stale, i)
			}
		}
		slices.Sort(stale)
	}
	for k := len(stale) - 1; k >= 0; k-- {
		at := stale[k] + shift + 1
		if !p.do("delete", fmt.Sprintf("rule -t %s %s %d: %s", table, from, at, cur[stale[k]]), func() error {
			return r.t.DeleteById(table, from, at)
		}) {
			return
		}
	}
}

// Cleanup removes every jump into an owned chain, then the owned chains.
// It returns the changes made; running it again makes none.
func (r *Reconciler) Cleanup(ctx context.Context) ([]Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &pass{ctx: ctx, log: r.log}
	var tables []string
	for _, c := range r.chains {
		if !slices.Contains(tables, c.Table) {
			tables = append(tables, c.Table)
		}
	}
	for _, table := range tables {
		for _, from := range BuiltinChains(table) {
			r.syncJumps(p, table, from, nil)
		}
	}
	for _, c := range r.chains {
		if p.ctx.Err() != nil {
			break
		}
		obj := "chain " + c.String()
		ok, err := r.t.ChainExists(c.Table, c.Name)
		if err != nil {
			p.fail("check "+obj, err)
			continue
		}
		if !ok {
			continue
		}
		// Flush, then delete: one change.
		p.do("delete", obj, func() error {
			if err := r.t.ClearChain(c.Table, c.Name); err != nil {
				return err
			}
			return r.t.DeleteChain(c.Table, c.Name)
		})
	}
	return p.result()
}
