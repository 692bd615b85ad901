package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is what `lab status` shows: the planned places with their
// addresses and whether their namespaces exist, stray namespaces of the
// lab's prefix, and recorded processes.
type Status struct {
	Lab      string `json:"lab"`
	StateDir string `json:"stateDir"`
	// Condition is "up", "incomplete" (up did not finish), "down" (nothing
	// there) or "leftovers" (namespaces but no state: a crashed run).
	Condition string           `json:"condition"`
	CreatedAt time.Time        `json:"createdAt,omitzero"`
	WAN       *WANPlan         `json:"wan,omitempty"`
	Places    []PlaceStatus    `json:"places,omitempty"`
	Missing   int              `json:"missing"`
	Stray     []string         `json:"stray,omitempty"`
	Processes []ProcessStatus  `json:"processes,omitempty"`
	StateErr  string           `json:"stateError,omitempty"`
	clusters  []clusterSummary // for the text form
}

type clusterSummary struct {
	name, pod, svc, lan, nat string
}

// PlaceStatus is one namespace of the lab.
type PlaceStatus struct {
	Target    string `json:"target"` // as for exec: "c1/n1-p1", "wan"
	Role      string `json:"role"`   // wan, ctl, lan, router, gateway, node, pod
	Namespace string `json:"namespace"`
	Addresses string `json:"addresses"`
	Present   bool   `json:"present"`
}

// ProcessStatus is a recorded process and whether it still runs.
type ProcessStatus struct {
	Process
	Alive bool `json:"alive"`
}

// Status inspects the lab. It reads the state and the host's namespaces and
// changes nothing.
func (l *Lab) Status(ctx context.Context) (*Status, error) {
	s := &Status{Lab: l.name, StateDir: l.stateDir}
	owned, err := l.ownedNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab %s status: %w", l.name, err)
	}
	present := map[string]bool{}
	for _, n := range owned {
		present[n] = true
	}
	st, err := l.readState()
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.Stray = owned
		if len(owned) > 0 {
			s.Condition = "leftovers"
		} else {
			s.Condition = "down"
		}
		return s, nil
	case err != nil:
		s.Condition, s.StateErr, s.Stray = "incomplete", err.Error(), owned
		return s, nil
	}
	s.CreatedAt = st.CreatedAt
	s.Condition = "up"
	if !st.Ready {
		s.Condition = "incomplete"
	}
	plan, err := NewPlan(st.Topology)
	if err != nil {
		s.Condition, s.StateErr, s.Stray = "incomplete", err.Error(), owned
		return s, nil
	}
	add := func(target, role, ns, addrs string) {
		s.Places = append(s.Places, PlaceStatus{Target: target, Role: role, Namespace: ns, Addresses: addrs, Present: present[ns]})
		if !present[ns] {
			s.Missing++
		}
		delete(present, ns)
	}
	s.WAN = &plan.WAN
	add("wan", "wan", plan.WAN.Namespace, plan.WAN.Prefix.String()+wanShaping(plan.WAN))
	add("ctl", "ctl", plan.Control.Namespace, plan.Control.Addr.String())
	for _, c := range plan.Clusters {
		cs := clusterSummary{name: c.Name, pod: c.PodCIDR.String(), svc: c.ServiceCIDR.String(), lan: c.LAN.String()}
		add(c.Name+"/lan", "lan", c.LANNamespace, c.LAN.String())
		if r := c.Router; r != nil {
			cs.nat = r.WANAddr.Addr().String()
			add(c.Name+"/rtr", "router", r.Namespace, "wan "+r.WANAddr.Addr().String()+" inside "+r.InsideAddr.String())
		}
		s.clusters = append(s.clusters, cs)
		for _, n := range c.Nodes {
			role, addrs := "node", "lan "+n.LANAddr.Addr().String()+" ctl "+n.CtlAddr.Addr().String()
			if n.Gateway {
				role = "gateway"
				addrs += " wan " + n.WANAddr.Addr().String()
			}
			addrs += " pods " + n.PodSlice.String()
			add(c.Name+"/"+n.Name, role, n.Namespace, addrs)
			for _, p := range n.Pods {
				add(c.Name+"/"+p.Name, "pod", p.Namespace, p.Addr.Addr().String())
			}
		}
	}
	for _, n := range owned {
		if present[n] {
			s.Stray = append(s.Stray, n)
		}
	}
	for _, p := range st.Processes {
		s.Processes = append(s.Processes, ProcessStatus{Process: p, Alive: l.kernel.Alive(p.Proc())})
	}
	return s, nil
}

func wanShaping(w WANPlan) string {
	if w.Delay == 0 && w.Loss == 0 {
		return ""
	}
	out := " delay " + w.Delay.String()
	if w.Jitter > 0 {
		out += "±" + w.Jitter.String()
	}
	return out + fmt.Sprintf(" loss %g%%", w.Loss)
}

// WriteText prints the status as an operator reads it.
func (s *Status) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s: %s (state %s", s.Lab, s.Condition, s.StateDir)
	if !s.CreatedAt.IsZero() {
		fmt.Fprintf(&b, ", created %s", s.CreatedAt.Local().Format(time.RFC3339))
	}
	b.WriteString(")\n")
	if s.StateErr != "" {
		fmt.Fprintf(&b, "state: %s\n", s.StateErr)
	}
	if len(s.Places) > 0 {
		fmt.Fprintf(&b, "namespaces: %d planned, %d missing\n", len(s.Places), s.Missing)
		for _, c := range s.clusters {
			fmt.Fprintf(&b, "cluster %s: pods %s, services %s, LAN %s", c.name, c.pod, c.svc, c.lan)
			if c.nat != "" {
				fmt.Fprintf(&b, ", behind NAT (public %s)", c.nat)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TARGET\tROLE\tNAMESPACE\tADDRESSES\tSTATE")
		for _, p := range s.Places {
			state := "present"
			if !p.Present {
				state = "MISSING"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Target, p.Role, p.Namespace, p.Addresses, state)
		}
		tw.Flush()
	}
	if len(s.Processes) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROCESS\tTARGET\tPID\tSTATE\tLOG")
		for _, p := range s.Processes {
			state := "running"
			if !p.Alive {
				state = "exited"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", p.Name, p.Target, p.PID, state, p.Log)
		}
		tw.Flush()
	}
	if len(s.Stray) > 0 {
		fmt.Fprintf(&b, "\nnamespaces with the lab's prefix not in its plan (removed by down): %s\n", strings.Join(s.Stray, " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
