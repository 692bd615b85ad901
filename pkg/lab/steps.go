package lab

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Step is one kernel operation of a plan. Steps are plain values; a
// [Kernel] carries them out. Every step acts inside lab namespaces only.
type Step interface {
	fmt.Stringer
	// Namespace is where the step acts (for a veth: where it is created).
	Namespace() string
	isStep()
}

// CreateNamespace makes a named network namespace with its loopback up.
type CreateNamespace struct{ Name string }

// SetSysctl writes a sysctl (dotted key, e.g. "net.ipv4.ip_forward") inside NS.
type SetSysctl struct{ NS, Key, Value string }

// AddBridge creates bridge Name in NS and sets it up.
type AddBridge struct{ NS, Name string }

// AddVeth creates a veth pair with end Name in NS and end PeerName in
// PeerNS, attaches each end to its Master / PeerMaster bridge when set, and
// sets both up.
type AddVeth struct {
	NS, Name, Master             string
	PeerNS, PeerName, PeerMaster string
}

// AddAddress adds Prefix (address and length) to Dev in NS.
type AddAddress struct {
	NS, Dev string
	Prefix  netip.Prefix
}

// AddRoute adds a route to Dst via the gateway Via out of Dev in NS.
type AddRoute struct {
	NS  string
	Dst netip.Prefix
	Via netip.Addr
	Dev string
}

// AddNetem shapes egress of Dev in NS with tc netem.
type AddNetem struct {
	NS, Dev       string
	Delay, Jitter time.Duration
	Loss          float64 // percent
}

// AddMasquerade makes NS a NAT router: traffic from Source leaving OutDev is
// masqueraded, and traffic arriving on OutDev for InDev is forwarded only
// when it belongs to a connection started from inside (like a home router).
type AddMasquerade struct {
	NS            string
	Source        netip.Prefix
	InDev, OutDev string
}

func (s CreateNamespace) Namespace() string { return s.Name }
func (s SetSysctl) Namespace() string       { return s.NS }
func (s AddBridge) Namespace() string       { return s.NS }
func (s AddVeth) Namespace() string         { return s.NS }
func (s AddAddress) Namespace() string      { return s.NS }
func (s AddRoute) Namespace() string        { return s.NS }
func (s AddNetem) Namespace() string        { return s.NS }
func (s AddMasquerade) Namespace() string   { return s.NS }

func (CreateNamespace) isStep() {}
func (SetSysctl) isStep()       {}
func (AddBridge) isStep()       {}
func (AddVeth) isStep()         {}
func (AddAddress) isStep()      {}
func (AddRoute) isStep()        {}
func (AddNetem) isStep()        {}
func (AddMasquerade) isStep()   {}

func (s CreateNamespace) String() string { return "netns " + s.Name }
func (s SetSysctl) String() string       { return "sysctl " + s.NS + " " + s.Key + "=" + s.Value }
func (s AddBridge) String() string       { return "bridge " + s.NS + " " + s.Name }

func (s AddVeth) String() string {
	end := func(ns, name, master string) string {
		if master != "" {
			return ns + ":" + name + "(master " + master + ")"
		}
		return ns + ":" + name
	}
	return "veth " + end(s.NS, s.Name, s.Master) + " <-> " + end(s.PeerNS, s.PeerName, s.PeerMaster)
}

func (s AddAddress) String() string { return "addr " + s.NS + " " + s.Dev + " " + s.Prefix.String() }

func (s AddRoute) String() string {
	return "route " + s.NS + " " + s.Dst.String() + " via " + s.Via.String() + " dev " + s.Dev
}

func (s AddNetem) String() string {
	out := "netem " + s.NS + " " + s.Dev + " delay " + s.Delay.String()
	if s.Jitter > 0 {
		out += " jitter " + s.Jitter.String()
	}
	return out + " loss " + strconv.FormatFloat(s.Loss, 'g', -1, 64) + "%"
}

func (s AddMasquerade) String() string {
	return "masquerade " + s.NS + " " + s.Source.String() + " out " + s.OutDev + " (inbound to " + s.InDev + " only for established)"
}
