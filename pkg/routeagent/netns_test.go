package routeagent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nspair"
	"github.com/weftnet/weft/pkg/routeagent"
)

// TestNetlinkLinksInNamespace finds interfaces by address with netlink
// inside a test namespace (the defaults of the tunnel MTU and the CNI
// interface).
func TestNetlinkLinksInNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("netns test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("netns test: needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns test: needs ip(8) from iproute2")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	ns := "wt" + hex.EncodeToString(rnd[:]) + "l"
	ip := func(args ...string) {
		t.Helper()
		if err := nspair.IP(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() {
		if err := nspair.IP(context.Background(), "netns", "del", ns); err != nil {
			t.Errorf("delete netns: %v", err)
		}
	})
	ip("-n", ns, "link", "add", "eth-lan", "mtu", "9000", "type", "veth", "peer", "name", "cbr0")
	ip("-n", ns, "link", "set", "cbr0", "mtu", "1500")
	ip("-n", ns, "addr", "add", "192.168.10.12/24", "dev", "eth-lan")
	ip("-n", ns, "addr", "add", "10.1.2.1/24", "dev", "cbr0")
	ip("-n", ns, "addr", "add", "10.1.2.9/24", "dev", "cbr0")

	l, err := routeagent.OpenNetlinkLinks(routeagent.NetlinkOptions{NetNS: nspair.NSPath(ns)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		addr string
		want routeagent.Link
		ok   bool
	}{
		{"192.168.10.12", routeagent.Link{Name: "eth-lan", MTU: 9000}, true},
		{"10.1.2.1", routeagent.Link{Name: "cbr0", MTU: 1500}, true},
		{"10.1.2.9", routeagent.Link{Name: "cbr0", MTU: 1500}, true},
		{"10.1.2.2", routeagent.Link{}, false},     // in the subnet, not assigned
		{"192.168.10.1", routeagent.Link{}, false}, // not here at all
	} {
		got, ok, err := l.LinkByAddr(netip.MustParseAddr(tc.addr))
		if err != nil || ok != tc.ok || got != tc.want {
			t.Errorf("LinkByAddr(%s) = %+v, %v, %v; want %+v, %v", tc.addr, got, ok, err, tc.want, tc.ok)
		}
	}
}
