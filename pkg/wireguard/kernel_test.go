package wireguard

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/weftnet/weft/pkg/wireguard/wireguardtest"
)

func TestKernelDeviceLifecycle(t *testing.T) {
	ctx := context.Background()
	links, wg := &wireguardtest.Links{}, &wireguardtest.WG{}
	wg.AddDevice("weft-wg")
	d, err := NewKernelDevice(Options{Name: "weft-wg", MTU: 1420}, KernelDeps{Links: links, WG: wg})
	if err != nil {
		t.Fatal(err)
	}
	if got := links.String(); got != "weft-wg mtu=1420" {
		t.Fatalf("links = %q", got)
	}
	if d.Backend() != BackendKernel || d.Name() != "weft-wg" {
		t.Fatalf("backend %s name %s", d.Backend(), d.Name())
	}
	cfg := Config{PrivateKey: key(1), ListenPort: 51820, Peers: []Peer{{PublicKey: key(10).Public(), Endpoint: ep("198.18.0.2:51820"), AllowedIPs: pfx("10.2.0.0/16")}}}
	if _, err := d.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Peers[0].Endpoint = ep("198.18.0.7:51820")
	if _, err := d.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("peer %s update endpoint=198.18.0.7:51820", key(10).Public().String()[:8])
	if last := wg.Log[len(wg.Log)-1]; last != want {
		t.Fatalf("endpoint change sent %q, want only %q", last, want)
	}
	if err := d.SetMTU(1380); err != nil {
		t.Fatal(err)
	}
	if got := links.String(); got != "weft-wg mtu=1380" {
		t.Fatalf("after SetMTU links = %q", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := links.String(); got != "" {
		t.Fatalf("after Close links = %q", got)
	}
}

func TestKernelUnsupportedAndBadOptions(t *testing.T) {
	links := &wireguardtest.Links{Err: fmt.Errorf("%w: operation not supported", ErrKernelUnsupported)}
	_, err := NewKernelDevice(Options{Name: "weft-wg", MTU: 1420}, KernelDeps{Links: links, WG: &wireguardtest.WG{}})
	if !errors.Is(err, ErrKernelUnsupported) {
		t.Fatalf("err = %v, want ErrKernelUnsupported", err)
	}
	for _, o := range []Options{
		{Name: "", MTU: 1420},
		{Name: "a-name-that-is-too-long", MTU: 1420},
		{Name: "weft-wg", MTU: 100},
		{Name: "weft-wg", MTU: 1420, Backend: "bpf"},
	} {
		if _, err := NewKernelDevice(o, KernelDeps{Links: &wireguardtest.Links{}, WG: &wireguardtest.WG{}}); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	d, err := NewKernelDevice(Options{Name: "weft-wg", MTU: 1420}, KernelDeps{Links: &wireguardtest.Links{}, WG: &wireguardtest.WG{}})
	if err != nil {
		t.Fatal(err)
	}
	// Bad configuration is refused before anything is sent.
	if _, err := d.Apply(context.Background(), Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
}
