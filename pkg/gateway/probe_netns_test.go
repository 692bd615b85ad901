package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nspair"
)

// TestProberInNamespace probes, from namespace A, B's address (answered)
// and an address nobody has (lost), over raw and over unprivileged ICMP
// sockets.
func TestProberInNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs root and network namespaces")
	}
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
	// Unprivileged ICMP sockets need the group in ping_group_range (a
	// per-namespace sysctl).
	if _, err := nspair.Exec(ctx, pair.A, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"); err != nil {
		t.Fatal(err)
	}
	for _, unpriv := range []bool{false, true} {
		t.Run(fmt.Sprintf("unprivileged=%v", unpriv), func(t *testing.T) {
			p, err := NewProber(ProberOptions{
				Source: pair.AddrA, NetNS: nspair.NSPath(pair.A), Interval: 200 * time.Millisecond, Window: 10,
				Unprivileged: unpriv, Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			p.SetTargets(map[string]netip.Addr{
				"b": pair.AddrB, "nobody": netip.MustParseAddr("192.0.2.99"), "v6": netip.MustParseAddr("2001:db8::1"),
			})
			if _, ok := p.Stats("v6"); ok {
				t.Fatal("a target of the other family is probed")
			}
			pctx, pcancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- p.Run(pctx) }()
			defer func() {
				pcancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				b, _ := p.Stats("b")
				n, _ := p.Stats("nobody")
				if b.Received >= 3 && b.LossPercent == 0 && b.Min > 0 && b.Max >= b.Avg && n.Sent >= 3 && n.LossPercent == 100 {
					t.Logf("b: %+v", b)
					return
				}
				select {
				case <-ctx.Done():
					t.Fatalf("stats not reached: b %+v, nobody %+v", b, n)
				case <-tick.C:
				}
			}
		})
	}
}
