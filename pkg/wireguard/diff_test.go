package wireguard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/wireguard/wireguardtest"
)

// key returns a deterministic test key whose public half is stable.
func key(seed byte) PrivateKey {
	var k PrivateKey
	for i := range k {
		k[i] = seed + byte(i)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func ep(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestDiff(t *testing.T) {
	self := key(1)
	a, b, pc := key(10).Public(), key(20).Public(), key(30).Public()
	base := State{PublicKey: self.Public(), ListenPort: 51820, Peers: []PeerState{
		{Peer: Peer{PublicKey: a, Endpoint: ep("198.18.0.2:51820"), AllowedIPs: pfx("10.2.0.0/16", "10.102.0.0/16")}},
		{Peer: Peer{PublicKey: b, Endpoint: ep("198.18.0.3:51820"), AllowedIPs: pfx("10.3.0.0/16")}},
	}}
	same := Config{PrivateKey: self, ListenPort: 51820, Peers: []Peer{
		{PublicKey: b, Endpoint: ep("198.18.0.3:51820"), AllowedIPs: pfx("10.3.0.0/16")},
		// order and masking of allowed IPs do not matter
		{PublicKey: a, Endpoint: ep("198.18.0.2:51820"), AllowedIPs: pfx("10.102.0.0/16", "10.2.1.1/16")},
	}}
	edit := func(f func(*Config)) Config {
		c := same
		c.Peers = slices.Clone(same.Peers)
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		desired Config
		want    string
	}{
		{"nothing changed", same, "no change"},
		{"zero endpoint keeps what the device has (roaming)", edit(func(c *Config) { c.Peers[0].Endpoint = netip.AddrPort{} }), "no change"},
		{"listen port 0 keeps the current port", edit(func(c *Config) { c.ListenPort = 0 }), "no change"},
		{"endpoint moved", edit(func(c *Config) { c.Peers[0].Endpoint = ep("198.18.0.9:51820") }),
			"update peer " + b.String() + " endpoint=198.18.0.9:51820"},
		{"allowed ips grow", edit(func(c *Config) { c.Peers[0].AllowedIPs = pfx("10.3.0.0/16", "242.3.0.0/16") }),
			"update peer " + b.String() + " allowed-ips=10.3.0.0/16,242.3.0.0/16"},
		{"keepalive", edit(func(c *Config) { c.Peers[0].PersistentKeepalive = 25 * time.Second }),
			"update peer " + b.String() + " keepalive=25s"},
		{"peer added", edit(func(c *Config) {
			c.Peers = append(c.Peers, Peer{PublicKey: pc, Endpoint: ep("198.18.0.4:51820"), AllowedIPs: pfx("10.4.0.0/16")})
		}), "add peer " + pc.String() + " endpoint=198.18.0.4:51820 allowed-ips=10.4.0.0/16"},
		{"peer removed", edit(func(c *Config) { c.Peers = c.Peers[1:] }), "remove peer " + b.String()},
		{"port changed", edit(func(c *Config) { c.ListenPort = 4500 }), "set listen-port 4500"},
		{"key changed", edit(func(c *Config) { c.PrivateKey = key(2) }), "set private-key (public " + key(2).Public().String() + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.desired.Validate(); err != nil {
				t.Fatal(err)
			}
			got := Diff(base, tt.desired).String()
			if got != tt.want {
				t.Errorf("Diff:\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	self := key(1)
	a, b := key(10).Public(), key(20).Public()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key", Config{}, "private key: unset"},
		{"bad port", Config{PrivateKey: self, ListenPort: 70000}, "listen port 70000"},
		{"own key as peer", Config{PrivateKey: self, Peers: []Peer{{PublicKey: self.Public()}}}, "peers[0].public_key: is this device's own key"},
		{"duplicate peer", Config{PrivateKey: self, Peers: []Peer{{PublicKey: a}, {PublicKey: a}}}, "peers[1].public_key: duplicate of peers[0]"},
		{"zero peer key", Config{PrivateKey: self, Peers: []Peer{{}}}, "peers[0].public_key: unset"},
		{"endpoint without port", Config{PrivateKey: self, Peers: []Peer{{PublicKey: a, Endpoint: ep("198.18.0.1:0")}}}, "peers[0].endpoint"},
		{"allowed ip claimed twice", Config{PrivateKey: self, Peers: []Peer{
			{PublicKey: a, AllowedIPs: pfx("10.2.0.0/16")}, {PublicKey: b, AllowedIPs: pfx("10.2.0.0/16")},
		}}, "peers[1].allowed_ips[0] 10.2.0.0/16: already allowed for peers[0]"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

// TestApplyRandomWalk applies random sequences of desired states to a
// device over the fake configurator and checks after every step that the
// device matches the desired state exactly, that nothing was sent when
// nothing changed, and that peers present before and after a step were
// updated in place (same session), never removed and re-added.
func TestApplyRandomWalk(t *testing.T) {
	ctx := context.Background()
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7919))
		links, wg := &wireguardtest.Links{}, &wireguardtest.WG{}
		wg.AddDevice("weft-wg")
		dev, err := NewKernelDevice(Options{Name: "weft-wg", MTU: 1420}, KernelDeps{Links: links, WG: wg})
		if err != nil {
			t.Fatal(err)
		}
		self := key(1)
		pool := make([]PublicKey, 8)
		for i := range pool {
			pool[i] = key(byte(40 + i*3)).Public()
		}
		var prev Config
		for step := 0; step < 30; step++ {
			desired := randomConfig(rng, self, pool)
			before := map[PublicKey]int{}
			for _, k := range pool {
				before[k] = wg.Session("weft-wg", k)
			}
			callsBefore := wg.Calls
			plan, err := dev.Apply(ctx, desired)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			st, err := dev.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if msg := matches(st, desired, prev); msg != "" {
				t.Fatalf("seed %d step %d: device does not match desired: %s\nplan:\n%s", seed, step, msg, plan)
			}
			if plan.Empty() != (wg.Calls == callsBefore) {
				t.Fatalf("seed %d step %d: empty plan=%v but configure calls went %d -> %d", seed, step, plan.Empty(), callsBefore, wg.Calls)
			}
			for _, p := range desired.Peers {
				if s := before[p.PublicKey]; s != 0 && wg.Session("weft-wg", p.PublicKey) != s {
					t.Fatalf("seed %d step %d: peer %s was re-created (session %d -> %d)", seed, step, p.PublicKey, s, wg.Session("weft-wg", p.PublicKey))
				}
			}
			// Applying the same state again changes nothing.
			calls := wg.Calls
			if again, err := dev.Apply(ctx, desired); err != nil || !again.Empty() || wg.Calls != calls {
				t.Fatalf("seed %d step %d: second apply not a no-op: %v %s", seed, step, err, again)
			}
			prev = desired
		}
		if err := dev.Close(); err != nil {
			t.Fatal(err)
		}
		if links.String() != "" {
			t.Fatalf("link left after close: %s", links)
		}
	}
}

func randomConfig(rng *rand.Rand, self PrivateKey, pool []PublicKey) Config {
	c := Config{PrivateKey: self, ListenPort: []int{51820, 51820, 4500}[rng.IntN(3)]}
	next := 0
	for i, k := range pool {
		if rng.IntN(3) == 0 {
			continue
		}
		p := Peer{PublicKey: k, PersistentKeepalive: time.Duration(rng.IntN(2)*25) * time.Second}
		if rng.IntN(4) != 0 {
			p.Endpoint = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(2 + i + rng.IntN(2)*100)}), 51820)
		}
		for n := rng.IntN(3); n >= 0; n-- {
			next++
			p.AllowedIPs = append(p.AllowedIPs, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(next), 0, 0}), 16))
		}
		c.Peers = append(c.Peers, p)
	}
	rng.Shuffle(len(c.Peers), func(i, j int) { c.Peers[i], c.Peers[j] = c.Peers[j], c.Peers[i] })
	return c
}

// matches compares observed state to desired config; a zero desired
// endpoint accepts whatever the device kept from before.
func matches(st State, want Config, prev Config) string {
	if st.PublicKey != want.PrivateKey.Public() {
		return "public key"
	}
	if want.ListenPort != 0 && st.ListenPort != want.ListenPort {
		return fmt.Sprintf("listen port %d, want %d", st.ListenPort, want.ListenPort)
	}
	if len(st.Peers) != len(want.Peers) {
		return fmt.Sprintf("%d peers, want %d", len(st.Peers), len(want.Peers))
	}
	for _, p := range want.Peers {
		o, ok := st.Peer(p.PublicKey)
		if !ok {
			return "missing peer " + p.PublicKey.String()
		}
		if !slices.Equal(o.AllowedIPs, canonicalPrefixes(p.AllowedIPs)) {
			return fmt.Sprintf("peer %s allowed ips %v, want %v", p.PublicKey, o.AllowedIPs, p.AllowedIPs)
		}
		if p.Endpoint.IsValid() && o.Endpoint != p.Endpoint {
			return fmt.Sprintf("peer %s endpoint %v, want %v", p.PublicKey, o.Endpoint, p.Endpoint)
		}
		if o.PersistentKeepalive != p.PersistentKeepalive {
			return fmt.Sprintf("peer %s keepalive %v, want %v", p.PublicKey, o.PersistentKeepalive, p.PersistentKeepalive)
		}
	}
	return ""
}
