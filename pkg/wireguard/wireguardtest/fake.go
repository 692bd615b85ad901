// Package wireguardtest provides in-memory fakes of the kernel interfaces
// package wireguard works through, for unit tests. Fakes print their state
// as sorted text.
package wireguardtest

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Links is a fake wireguard.LinkManager.
type Links struct {
	mu sync.Mutex
	// Err, when set, is returned by EnsureWireGuardLink (for example
	// wireguard.ErrKernelUnsupported).
	Err   error
	links map[string]int // name -> mtu
}

// EnsureWireGuardLink implements wireguard.LinkManager.
func (l *Links) EnsureWireGuardLink(name string, mtu int) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Err != nil {
		return false, l.Err
	}
	if l.links == nil {
		l.links = map[string]int{}
	}
	_, existed := l.links[name]
	l.links[name] = mtu
	return !existed, nil
}

// SetMTU implements wireguard.LinkManager.
func (l *Links) SetMTU(name string, mtu int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.links[name]; !ok {
		return fmt.Errorf("link %s not found", name)
	}
	l.links[name] = mtu
	return nil
}

// DeleteLink implements wireguard.LinkManager.
func (l *Links) DeleteLink(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.links, name)
	return nil
}

// String prints "name mtu=N" lines, sorted.
func (l *Links) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lines []string
	for n, m := range l.links {
		lines = append(lines, fmt.Sprintf("%s mtu=%d", n, m))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// WG is a fake wireguard.Configurator implementing wgtypes.Config semantics
// for one or more devices. Every peer gets a session number when it is
// added; updates keep it, so a test can tell an in-place update from a
// remove and re-add (which would drop the peer's handshake).
type WG struct {
	mu       sync.Mutex
	devices  map[string]*wgtypes.Device
	sessions map[string]map[wgtypes.Key]int
	next     int
	// Calls counts ConfigureDevice calls.
	Calls int
	// Log records every ConfigureDevice call as text.
	Log []string
}

// AddDevice registers an empty device.
func (w *WG) AddDevice(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.devices == nil {
		w.devices = map[string]*wgtypes.Device{}
		w.sessions = map[string]map[wgtypes.Key]int{}
	}
	w.devices[name] = &wgtypes.Device{Name: name, Type: wgtypes.LinuxKernel}
	w.sessions[name] = map[wgtypes.Key]int{}
}

// Device implements wireguard.Configurator.
func (w *WG) Device(name string) (*wgtypes.Device, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := w.devices[name]
	if !ok {
		return nil, fmt.Errorf("device %s: %w", name, unix.ENODEV)
	}
	cp := *d
	cp.Peers = slices.Clone(d.Peers)
	for i := range cp.Peers {
		cp.Peers[i].AllowedIPs = slices.Clone(cp.Peers[i].AllowedIPs)
	}
	return &cp, nil
}

// Session returns the session number of a peer (0 when absent).
func (w *WG) Session(name string, key [32]byte) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sessions[name][wgtypes.Key(key)]
}

// ConfigureDevice implements wireguard.Configurator.
func (w *WG) ConfigureDevice(name string, cfg wgtypes.Config) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := w.devices[name]
	if !ok {
		return fmt.Errorf("device %s: %w", name, unix.ENODEV)
	}
	w.Calls++
	w.Log = append(w.Log, describe(cfg))
	if cfg.PrivateKey != nil {
		d.PrivateKey = *cfg.PrivateKey
		d.PublicKey = cfg.PrivateKey.PublicKey()
	}
	if cfg.ListenPort != nil {
		d.ListenPort = *cfg.ListenPort
	}
	if cfg.ReplacePeers {
		d.Peers = nil
		w.sessions[name] = map[wgtypes.Key]int{}
	}
	for _, pc := range cfg.Peers {
		idx := slices.IndexFunc(d.Peers, func(p wgtypes.Peer) bool { return p.PublicKey == pc.PublicKey })
		if pc.Remove {
			if idx >= 0 {
				d.Peers = slices.Delete(d.Peers, idx, idx+1)
				delete(w.sessions[name], pc.PublicKey)
			}
			continue
		}
		if idx < 0 {
			if pc.UpdateOnly {
				continue
			}
			w.next++
			w.sessions[name][pc.PublicKey] = w.next
			d.Peers = append(d.Peers, wgtypes.Peer{PublicKey: pc.PublicKey})
			idx = len(d.Peers) - 1
		}
		p := &d.Peers[idx]
		if pc.Endpoint != nil {
			e := *pc.Endpoint
			p.Endpoint = &e
		}
		if pc.PersistentKeepaliveInterval != nil {
			p.PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		// An allowed IP belongs to one peer: claiming it moves it.
		for _, a := range pc.AllowedIPs {
			for j := range d.Peers {
				d.Peers[j].AllowedIPs = slices.DeleteFunc(d.Peers[j].AllowedIPs, func(n net.IPNet) bool { return n.String() == a.String() })
			}
			p.AllowedIPs = append(p.AllowedIPs, a)
		}
	}
	return nil
}

func describe(cfg wgtypes.Config) string {
	var parts []string
	if cfg.PrivateKey != nil {
		parts = append(parts, "private-key")
	}
	if cfg.ListenPort != nil {
		parts = append(parts, fmt.Sprintf("port=%d", *cfg.ListenPort))
	}
	if cfg.ReplacePeers {
		parts = append(parts, "replace-peers")
	}
	for _, p := range cfg.Peers {
		s := "peer " + p.PublicKey.String()[:8]
		switch {
		case p.Remove:
			s += " remove"
		case p.UpdateOnly:
			s += " update"
		default:
			s += " add"
		}
		if p.Endpoint != nil {
			s += " endpoint=" + p.Endpoint.String()
		}
		if p.ReplaceAllowedIPs {
			var a []string
			for _, n := range p.AllowedIPs {
				a = append(a, n.String())
			}
			s += " allowed-ips=" + strings.Join(a, ",")
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
