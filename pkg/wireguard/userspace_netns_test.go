package wireguard

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/nspair"
)

// TestUserspaceTunnelInNamespaces joins two namespaces by a veth, runs one
// device in each (auto backend: userspace here, as this kernel has no
// WireGuard), configures peers through the Device interface and checks what
// a user would: ping across the tunnel, `wg show` inside the namespace, and
// an endpoint change applied in place.
func TestUserspaceTunnelInNamespaces(t *testing.T) {
	if why := nspair.Supported(); why != "" {
		t.Skip("netns test: " + why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pair, err := nspair.New(ctx, nspair.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))

	open := func(ns, name string) Device {
		d, err := Open(ctx, Options{Name: name, MTU: 1420, NetNS: nspair.NSPath(ns), Logger: log})
		if err != nil {
			t.Fatalf("open %s in %s: %v", name, ns, err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	nameA, nameB := pair.Prefix+"wa", pair.Prefix+"wb"
	devA, devB := open(pair.A, nameA), open(pair.B, nameB)
	if devA.Backend() != BackendUserspace {
		t.Logf("auto chose %s (kernel WireGuard present)", devA.Backend())
	}
	// A second device with the same name is refused with a clear error.
	if _, err := Open(ctx, Options{Name: nameA, MTU: 1420, NetNS: nspair.NSPath(pair.B), Backend: BackendUserspace}); err == nil || !strings.Contains(err.Error(), nameA) {
		t.Fatalf("duplicate device name: err = %v", err)
	}

	tunA, tunB := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	for _, s := range [][]string{
		{"-n", pair.A, "addr", "add", tunA.String() + "/24", "dev", nameA},
		{"-n", pair.B, "addr", "add", tunB.String() + "/24", "dev", nameB},
	} {
		if err := nspair.IP(ctx, s...); err != nil {
			t.Fatal(err)
		}
	}
	keyA, _ := GeneratePrivateKey()
	keyB, _ := GeneratePrivateKey()
	cfgA := Config{PrivateKey: keyA, ListenPort: 51820, Peers: []Peer{{
		PublicKey: keyB.Public(), Endpoint: netip.AddrPortFrom(pair.AddrB, 51821), AllowedIPs: []netip.Prefix{netip.PrefixFrom(tunB, 32)},
	}}}
	cfgB := Config{PrivateKey: keyB, ListenPort: 51821, Peers: []Peer{{
		PublicKey: keyA.Public(), Endpoint: netip.AddrPortFrom(pair.AddrA, 51820), AllowedIPs: []netip.Prefix{netip.PrefixFrom(tunA, 32)},
	}}}
	if _, err := devA.Apply(ctx, cfgA); err != nil {
		t.Fatal(err)
	}
	if _, err := devB.Apply(ctx, cfgB); err != nil {
		t.Fatal(err)
	}
	waitPing(ctx, t, pair.A, tunB)

	// wg show, run inside the namespace as an operator would.
	out, err := nspair.Exec(ctx, pair.A, "wg", "show", nameA)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "peer: "+keyB.Public().String()) || !strings.Contains(out, "latest handshake:") {
		t.Fatalf("wg show %s lacks the peer or its handshake:\n%s", nameA, out)
	}
	st, err := devA.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := st.Peer(keyB.Public())
	if !ok || time.Since(peer.LastHandshake) > time.Minute || peer.RxBytes == 0 || peer.TxBytes == 0 {
		t.Fatalf("state after ping: %+v", peer)
	}
	if plan, err := devA.Apply(ctx, cfgA); err != nil || !plan.Empty() {
		t.Fatalf("re-applying the same config: plan %s, err %v", plan, err)
	}

	// Move B's underlay address; A's peer endpoint follows without
	// re-creating the device.
	ifindexBefore := linkIndex(t, pair.A, nameA)
	if err := nspair.IP(ctx, "-n", pair.B, "addr", "add", "192.0.2.3/24", "dev", pair.Link); err != nil {
		t.Fatal(err)
	}
	cfgA.Peers[0].Endpoint = netip.MustParseAddrPort("192.0.2.3:51821")
	plan, err := devA.Apply(ctx, cfgA)
	if err != nil {
		t.Fatal(err)
	}
	if want := "update peer " + keyB.Public().String() + " endpoint=192.0.2.3:51821"; plan.String() != want {
		t.Fatalf("endpoint change plan:\n%s\nwant:\n%s", plan, want)
	}
	// Remove the old address (promoting the new one, so B keeps its route
	// to A): from now on only the new endpoint can carry the tunnel.
	if _, err := nspair.Exec(ctx, pair.B, "sysctl", "-qw", "net.ipv4.conf."+pair.Link+".promote_secondaries=1"); err != nil {
		t.Fatal(err)
	}
	if err := nspair.IP(ctx, "-n", pair.B, "addr", "del", pair.AddrB.String()+"/24", "dev", pair.Link); err != nil {
		t.Fatal(err)
	}
	waitPing(ctx, t, pair.A, tunB)
	if after := linkIndex(t, pair.A, nameA); after != ifindexBefore {
		t.Fatalf("device re-created: ifindex %d -> %d", ifindexBefore, after)
	}
	out, _ = nspair.Exec(ctx, pair.A, "wg", "show", nameA, "endpoints")
	if !strings.Contains(out, "192.0.2.3:51821") {
		t.Fatalf("wg show endpoints = %q, want 192.0.2.3:51821", out)
	}

	// Close removes the interface and the UAPI socket.
	if err := devA.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/var/run/wireguard/" + nameA + ".sock"); !os.IsNotExist(err) {
		t.Fatalf("uapi socket left after close: %v", err)
	}
	if idx := linkIndexOrZero(pair.A, nameA); idx != 0 {
		t.Fatalf("interface %s left after close", nameA)
	}
}

// waitPing pings until a reply arrives or ctx ends (the first packets wait
// for the handshake).
func waitPing(ctx context.Context, t *testing.T, ns string, dst netip.Addr) {
	t.Helper()
	var lastErr error
	for ctx.Err() == nil {
		if _, lastErr = nspair.Exec(ctx, ns, "ping", "-c", "1", "-W", "1", dst.String()); lastErr == nil {
			return
		}
	}
	t.Fatalf("no ping reply from %s in %s: %v", dst, ns, lastErr)
}

func linkIndex(t *testing.T, ns, name string) int {
	t.Helper()
	idx := linkIndexOrZero(ns, name)
	if idx == 0 {
		t.Fatalf("link %s not found in %s", name, ns)
	}
	return idx
}

func linkIndexOrZero(ns, name string) int {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return 0
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return 0
	}
	defer nl.Close()
	l, err := nl.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
