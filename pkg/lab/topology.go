package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// Limits of the address plan and of interface names (see the package doc).
const (
	// DefaultName is the lab name when none is given.
	DefaultName = "weft"
	// MaxLabNameLen bounds the lab name, the prefix of every name the lab makes.
	MaxLabNameLen = 10
	// MaxClusterNameLen keeps "<cluster>-rtr" and "<cluster>-n<i>", the
	// bridge ports in the WAN and control namespaces, within 15 characters.
	MaxClusterNameLen = 10
	// MaxClusters: cluster n owns 198.18.0.(10n)..(10n+9) on the WAN and the
	// same block on the control network.
	MaxClusters = 24
	// MaxNodes per cluster: node i is host 10n+i on the WAN and control network.
	MaxNodes = 9
	// MaxPodsPerNode: pod j is host 1+j in its node's /24 slice.
	MaxPodsPerNode = 253
	// MaxWANDelay bounds wan.delay and wan.jitter.
	MaxWANDelay = 10 * time.Second

	defaultNodes       = 2
	defaultPodsPerNode = 2
)

// Topology describes a lab: its name, the WAN and the clusters. It is read
// from YAML (see [ParseTopology]); omitted fields take defaults
// ([Topology.WithDefaults]).
type Topology struct {
	// Name of the lab and prefix of every name it makes (default "weft").
	// Lowercase letters and digits, starting with a letter, at most
	// MaxLabNameLen characters: no '-', so "<name>-" never matches another
	// lab's names.
	Name string `json:"name,omitempty"`
	// WAN impairments, applied on every port of the WAN bridge.
	WAN WAN `json:"wan,omitempty"`
	// Clusters in order; the n-th (1-based) gets index n in the address plan.
	Clusters []Cluster `json:"clusters,omitempty"`
}

// WAN holds tc netem settings for the WAN. They act on every WAN bridge port
// in the direction towards the attached gateway or router, so a round trip
// between two gateways crosses two ports: RTT = 2 × delay.
type WAN struct {
	// Delay is the one-way delay added on each port ("20ms").
	Delay Duration `json:"delay,omitempty"`
	// Jitter varies the delay (needs a delay).
	Jitter Duration `json:"jitter,omitempty"`
	// Loss is the percentage (0–100) of packets dropped on each port.
	Loss float64 `json:"loss,omitempty"`
}

// Cluster describes one cluster of the lab.
type Cluster struct {
	// Name is a DNS-1123 label of at most MaxClusterNameLen characters.
	Name string `json:"name"`
	// PodCIDR (default 10.<n>.0.0/16); node i gets the i-th /24 inside it.
	PodCIDR string `json:"podCIDR,omitempty"`
	// ServiceCIDR (default 10.<100+n>.0.0/16).
	ServiceCIDR string `json:"serviceCIDR,omitempty"`
	// Nodes is the node count (default 2).
	Nodes int `json:"nodes,omitempty"`
	// Gateways lists the 1-based indices of gateway nodes (default [1]).
	Gateways []int `json:"gateways,omitempty"`
	// PodsPerNode (default 2; 0 is allowed).
	PodsPerNode *int `json:"podsPerNode,omitempty"`
	// NAT puts the cluster's gateways behind a masquerading router.
	NAT bool `json:"nat,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("20ms").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "20ms"; a bare 0 is allowed.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if jerr := json.Unmarshal(b, &n); jerr == nil && n == 0 {
			*d = 0
			return nil
		}
		return fmt.Errorf("duration must be a string such as \"20ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// ParseTopology reads a YAML (or JSON) topology. Unknown fields are errors,
// so a typo does not silently fall back to a default. Defaults are not
// applied and nothing is validated beyond the syntax.
func ParseTopology(data []byte) (Topology, error) {
	var t Topology
	if err := yaml.UnmarshalStrict(data, &t); err != nil {
		return Topology{}, fmt.Errorf("parse topology: %w", err)
	}
	return t, nil
}

// LoadTopology reads and parses the topology file at path.
func LoadTopology(path string) (Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Topology{}, fmt.Errorf("read topology: %w", err)
	}
	t, err := ParseTopology(data)
	if err != nil {
		return Topology{}, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// DefaultTopology is the lab made when no file is given: clusters "c1" and
// "c2" with the default per-cluster settings. Its name is empty: whichever
// lab builds it (DefaultName when defaults are applied).
func DefaultTopology() Topology {
	return GenerateTopology(2, defaultNodes, defaultPodsPerNode)
}

// GenerateTopology makes clusters "c1".."c<clusters>" with the given node
// and pod counts and default CIDRs and gateways. The name is left empty.
func GenerateTopology(clusters, nodes, podsPerNode int) Topology {
	var t Topology
	for n := 1; n <= clusters; n++ {
		pods := podsPerNode
		t.Clusters = append(t.Clusters, Cluster{Name: "c" + strconv.Itoa(n), Nodes: nodes, PodsPerNode: &pods})
	}
	t = t.WithDefaults()
	t.Name = ""
	return t
}

// WithDefaults returns a copy with every omitted field filled in. Cluster n
// (1-based) defaults to pod CIDR 10.<n>.0.0/16 and service CIDR
// 10.<100+n>.0.0/16 (left empty when n is too large for that scheme, which
// validation then reports).
func (t Topology) WithDefaults() Topology {
	out := t
	if out.Name == "" {
		out.Name = DefaultName
	}
	out.Clusters = make([]Cluster, len(t.Clusters))
	for k, c := range t.Clusters {
		n := k + 1
		if c.PodCIDR == "" && n <= 255 {
			c.PodCIDR = fmt.Sprintf("10.%d.0.0/16", n)
		}
		if c.ServiceCIDR == "" && 100+n <= 255 {
			c.ServiceCIDR = fmt.Sprintf("10.%d.0.0/16", 100+n)
		}
		if c.Nodes == 0 {
			c.Nodes = defaultNodes
		}
		if len(c.Gateways) == 0 {
			c.Gateways = []int{1}
		} else {
			c.Gateways = append([]int(nil), c.Gateways...)
		}
		if c.PodsPerNode == nil {
			p := defaultPodsPerNode
			c.PodsPerNode = &p
		} else {
			p := *c.PodsPerNode
			c.PodsPerNode = &p
		}
		out.Clusters[k] = c
	}
	return out
}

// FieldError is a validation failure of one topology field.
type FieldError struct {
	Field  string // e.g. "clusters[1].podCIDR"
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

var (
	labNameRE     = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	dns1123LabelR = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

	// infraRange holds the WAN, the cluster LANs, the NAT-inside networks
	// and the control network; no pod or service CIDR may overlap it.
	infraRange = netip.MustParsePrefix("198.18.0.0/15")
)

// ValidateLabName checks a lab name (see [Topology.Name]).
func ValidateLabName(name string) error {
	switch {
	case name == "":
		return errors.New("lab name is empty")
	case len(name) > MaxLabNameLen:
		return fmt.Errorf("lab name %q is too long (%d > %d characters)", name, len(name), MaxLabNameLen)
	case !labNameRE.MatchString(name):
		return fmt.Errorf("lab name %q must be lowercase letters and digits starting with a letter (no '-': it separates the parts of every lab name)", name)
	}
	return nil
}

// Validate checks a topology with defaults applied and returns every
// problem found, each a *FieldError naming the field.
func (t Topology) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	if err := ValidateLabName(t.Name); err != nil {
		bad("name", "%v", err)
	}
	d, j := time.Duration(t.WAN.Delay), time.Duration(t.WAN.Jitter)
	if d < 0 || d > MaxWANDelay {
		bad("wan.delay", "%s is out of range 0..%s", d, MaxWANDelay)
	}
	if j < 0 || j > MaxWANDelay {
		bad("wan.jitter", "%s is out of range 0..%s", j, MaxWANDelay)
	} else if j > 0 && d == 0 {
		bad("wan.jitter", "needs a wan.delay")
	}
	if math.IsNaN(t.WAN.Loss) || t.WAN.Loss < 0 || t.WAN.Loss > 100 {
		bad("wan.loss", "%v is not a percentage in 0..100", t.WAN.Loss)
	}
	if len(t.Clusters) == 0 {
		bad("clusters", "at least one cluster is required")
	}
	if len(t.Clusters) > MaxClusters {
		bad("clusters", "%d clusters do not fit the address plan (at most %d: cluster n uses WAN hosts 198.18.0.10n..10n+9)", len(t.Clusters), MaxClusters)
	}

	type owned struct {
		field string
		p     netip.Prefix
	}
	var prefixes []owned
	names := map[string]int{}
	for k, c := range t.Clusters {
		f := fmt.Sprintf("clusters[%d]", k)
		switch {
		case c.Name == "":
			bad(f+".name", "is required")
		case len(c.Name) > MaxClusterNameLen:
			bad(f+".name", "%q is too long (%d > %d characters): interface names such as %q must fit 15 characters", c.Name, len(c.Name), MaxClusterNameLen, c.Name+"-rtr")
		case !dns1123LabelR.MatchString(c.Name):
			bad(f+".name", "%q is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)", c.Name)
		}
		if prev, dup := names[c.Name]; dup && c.Name != "" {
			bad(f+".name", "%q duplicates clusters[%d].name", c.Name, prev)
		} else {
			names[c.Name] = k
		}
		if c.Nodes < 1 || c.Nodes > MaxNodes {
			bad(f+".nodes", "%d is out of range 1..%d (node i is host 10n+i on the WAN and control networks)", c.Nodes, MaxNodes)
		}
		if c.PodsPerNode == nil || *c.PodsPerNode < 0 || *c.PodsPerNode > MaxPodsPerNode {
			v := "unset"
			if c.PodsPerNode != nil {
				v = strconv.Itoa(*c.PodsPerNode)
			}
			bad(f+".podsPerNode", "%s is out of range 0..%d (pod j is host 1+j of its node's /24)", v, MaxPodsPerNode)
		}
		if len(c.Gateways) == 0 {
			bad(f+".gateways", "at least one gateway node is required")
		}
		seen := map[int]bool{}
		for gi, g := range c.Gateways {
			if g < 1 || g > c.Nodes {
				bad(fmt.Sprintf("%s.gateways[%d]", f, gi), "node %d does not exist (nodes are 1..%d)", g, c.Nodes)
			}
			if seen[g] {
				bad(fmt.Sprintf("%s.gateways[%d]", f, gi), "node %d is listed twice", g)
			}
			seen[g] = true
		}
		for _, cf := range []struct{ name, val string }{{"podCIDR", c.PodCIDR}, {"serviceCIDR", c.ServiceCIDR}} {
			p, err := parseCanonicalV4(cf.val)
			if err != nil {
				bad(f+"."+cf.name, "%v", err)
				continue
			}
			if p.Overlaps(infraRange) {
				bad(f+"."+cf.name, "%s overlaps the lab's own range %s (WAN, LANs, control network)", p, infraRange)
				continue
			}
			if cf.name == "podCIDR" && c.Nodes >= 1 && c.Nodes <= MaxNodes {
				if _, err := podSlice(p, c.Nodes); err != nil {
					bad(f+".podCIDR", "%s is too small for %d nodes: node i uses the i-th /24 inside it, so it must hold %d /24s", p, c.Nodes, c.Nodes+1)
				}
			}
			prefixes = append(prefixes, owned{f + "." + cf.name, p})
		}
	}
	for a := range prefixes {
		for b := a + 1; b < len(prefixes); b++ {
			if prefixes[a].p.Overlaps(prefixes[b].p) {
				bad(prefixes[b].field, "%s overlaps %s %s", prefixes[b].p, prefixes[a].field, prefixes[a].p)
			}
		}
	}
	return errors.Join(errs...)
}

// parseCanonicalV4 parses an IPv4 CIDR and insists on its canonical form.
func parseCanonicalV4(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("is required")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %w", s, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%s is not IPv4 (the lab is IPv4 only)", p)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s is not canonical (did you mean %s?)", p, p.Masked())
	}
	if p.Bits() < 8 {
		return netip.Prefix{}, fmt.Errorf("%s is too broad (at most /8)", p)
	}
	return p, nil
}

// podSlice is the i-th /24 inside the pod CIDR (node i's pod subnet).
func podSlice(pod netip.Prefix, i int) (netip.Prefix, error) {
	if pod.Bits() > 24 || i < 0 || i >= 1<<(24-pod.Bits()) {
		return netip.Prefix{}, fmt.Errorf("pod CIDR %s has no /24 number %d", pod, i)
	}
	a := pod.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i) << 8
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 24), nil
}
