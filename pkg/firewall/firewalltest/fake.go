// Package firewalltest provides an in-memory fake of firewall.Tables with
// iptables' semantics where the reconciler depends on them (positions,
// jump targets must exist, a referenced or non-empty chain cannot be
// deleted) and prints its state as sorted text, like iptables-save.
package firewalltest

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/weftnet/weft/pkg/firewall"
)

type chain struct {
	builtin bool
	rules   []string
}

// Tables is a fake firewall.Tables. The zero value is not usable; call New.
type Tables struct {
	mu     sync.Mutex
	tables map[string]map[string]*chain
	writes int
	fail   map[string]error
}

var _ firewall.Tables = (*Tables)(nil)

// New returns tables filter, nat, mangle and raw with their built-in chains,
// all empty.
func New() *Tables {
	t := &Tables{tables: map[string]map[string]*chain{}, fail: map[string]error{}}
	for _, name := range []string{"filter", "nat", "mangle", "raw"} {
		chains := map[string]*chain{}
		for _, c := range firewall.BuiltinChains(name) {
			chains[c] = &chain{builtin: true}
		}
		t.tables[name] = chains
	}
	return t
}

// Fail makes op (a method name) return err until Fail(op, nil).
func (t *Tables) Fail(op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		delete(t.fail, op)
	} else {
		t.fail[op] = err
	}
}

// Writes counts the calls that changed state.
func (t *Tables) Writes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.writes
}

func (t *Tables) get(table, name string) (*chain, error) {
	chains, ok := t.tables[table]
	if !ok {
		return nil, fmt.Errorf("table %q does not exist", table)
	}
	c, ok := chains[name]
	if !ok {
		return nil, fmt.Errorf("chain %q in table %q: No chain/target/match by that name", name, table)
	}
	return c, nil
}

// standardTargets are targets that are not chains.
func standardTargets() []string {
	return []string{"ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "MASQUERADE", "SNAT", "DNAT", "TCPMSS", "MARK", "CONNMARK", "NOTRACK", "CT"}
}

// checkSpec rejects a rule whose jump target neither is a standard target
// nor exists as a chain of table.
func (t *Tables) checkSpec(table string, spec []string) error {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] != "-j" && spec[i] != "-g" {
			continue
		}
		target := spec[i+1]
		if slices.Contains(standardTargets(), target) {
			continue
		}
		if _, ok := t.tables[table][target]; !ok {
			return fmt.Errorf("couldn't load target %q: No such file or directory", target)
		}
	}
	return nil
}

func text(spec []string) string {
	parts := make([]string, len(spec))
	for i, s := range spec {
		if strings.ContainsAny(s, " \t") {
			s = `"` + s + `"`
		}
		parts[i] = s
	}
	return strings.Join(parts, " ")
}

// ChainExists implements firewall.Tables.
func (t *Tables) ChainExists(table, name string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["ChainExists"]; err != nil {
		return false, err
	}
	chains, ok := t.tables[table]
	if !ok {
		return false, fmt.Errorf("table %q does not exist", table)
	}
	_, ok = chains[name]
	return ok, nil
}

// NewChain implements firewall.Tables.
func (t *Tables) NewChain(table, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["NewChain"]; err != nil {
		return err
	}
	chains, ok := t.tables[table]
	if !ok {
		return fmt.Errorf("table %q does not exist", table)
	}
	if _, ok := chains[name]; ok {
		return errors.New("chain " + name + ": Chain already exists")
	}
	chains[name] = &chain{}
	t.writes++
	return nil
}

// List implements firewall.Tables, in `iptables -S <chain>` format.
func (t *Tables) List(table, name string) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["List"]; err != nil {
		return nil, err
	}
	c, err := t.get(table, name)
	if err != nil {
		return nil, err
	}
	head := "-N " + name
	if c.builtin {
		head = "-P " + name + " ACCEPT"
	}
	out := []string{head}
	for _, r := range c.rules {
		out = append(out, "-A "+name+" "+r)
	}
	return out, nil
}

// Append implements firewall.Tables.
func (t *Tables) Append(table, name string, spec ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["Append"]; err != nil {
		return err
	}
	c, err := t.get(table, name)
	if err != nil {
		return err
	}
	if err := t.checkSpec(table, spec); err != nil {
		return err
	}
	c.rules = append(c.rules, text(spec))
	t.writes++
	return nil
}

// Insert implements firewall.Tables.
func (t *Tables) Insert(table, name string, pos int, spec ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["Insert"]; err != nil {
		return err
	}
	c, err := t.get(table, name)
	if err != nil {
		return err
	}
	if pos < 1 || pos > len(c.rules)+1 {
		return fmt.Errorf("insert into %s at %d: Index of insertion too big", name, pos)
	}
	if err := t.checkSpec(table, spec); err != nil {
		return err
	}
	c.rules = slices.Insert(c.rules, pos-1, text(spec))
	t.writes++
	return nil
}

// DeleteById implements firewall.Tables.
func (t *Tables) DeleteById(table, name string, id int) error { //nolint:revive,stylecheck // go-iptables' name
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["DeleteById"]; err != nil {
		return err
	}
	c, err := t.get(table, name)
	if err != nil {
		return err
	}
	if id < 1 || id > len(c.rules) {
		return fmt.Errorf("delete from %s at %d: Index of deletion too big", name, id)
	}
	c.rules = slices.Delete(c.rules, id-1, id)
	t.writes++
	return nil
}

// ClearChain implements firewall.Tables (creating a missing chain, like
// go-iptables).
func (t *Tables) ClearChain(table, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["ClearChain"]; err != nil {
		return err
	}
	chains, ok := t.tables[table]
	if !ok {
		return fmt.Errorf("table %q does not exist", table)
	}
	if c, ok := chains[name]; ok {
		c.rules = nil
	} else {
		chains[name] = &chain{}
	}
	t.writes++
	return nil
}

// DeleteChain implements firewall.Tables.
func (t *Tables) DeleteChain(table, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["DeleteChain"]; err != nil {
		return err
	}
	c, err := t.get(table, name)
	if err != nil {
		return err
	}
	switch {
	case c.builtin:
		return fmt.Errorf("delete chain %s: built-in chain", name)
	case len(c.rules) > 0:
		return fmt.Errorf("delete chain %s: Directory not empty", name)
	}
	for other, oc := range t.tables[table] {
		for _, r := range oc.rules {
			f := strings.Fields(r)
			for i := 0; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && f[i+1] == name {
					return fmt.Errorf("delete chain %s: Too many links (referenced from %s)", name, other)
				}
			}
		}
	}
	delete(t.tables[table], name)
	t.writes++
	return nil
}

// Rules returns a chain's rules (nil when it does not exist).
func (t *Tables) Rules(table, name string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.get(table, name)
	if err != nil {
		return nil
	}
	return slices.Clone(c.rules)
}

// String prints the tables like iptables-save without counters: tables
// sorted, then chain declarations sorted, then each chain's rules in order
// (chains sorted).
func (t *Tables) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	tables := make([]string, 0, len(t.tables))
	for name := range t.tables {
		tables = append(tables, name)
	}
	sort.Strings(tables)
	for _, table := range tables {
		chains := t.tables[table]
		names := make([]string, 0, len(chains))
		for name := range chains {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "*%s\n", table)
		for _, name := range names {
			policy := "-"
			if chains[name].builtin {
				policy = "ACCEPT"
			}
			fmt.Fprintf(&b, ":%s %s\n", name, policy)
		}
		for _, name := range names {
			for _, r := range chains[name].rules {
				fmt.Fprintf(&b, "-A %s %s\n", name, r)
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}
