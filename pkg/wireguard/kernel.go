package wireguard

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// LinkManager is the kernel link access the kernel backend needs.
type LinkManager interface {
	// EnsureWireGuardLink creates the link (type wireguard) with the MTU and
	// sets it up, or adopts an existing wireguard link of that name so a
	// restart keeps peers and sessions. It returns ErrKernelUnsupported
	// when the kernel has no WireGuard.
	EnsureWireGuardLink(name string, mtu int) (created bool, err error)
	SetMTU(name string, mtu int) error
	DeleteLink(name string) error
}

// KernelDevice is a kernel WireGuard interface.
type KernelDevice struct {
	configured
	links   LinkManager
	closers []io.Closer
}

// KernelDeps are the kernel interfaces a [KernelDevice] works through;
// tests pass fakes (package wireguardtest).
type KernelDeps struct {
	Links LinkManager
	WG    Configurator
	// Closers are closed, in order, by Close after the link is removed.
	Closers []io.Closer
}

// NewKernelDevice creates the link through deps and returns the device.
func NewKernelDevice(o Options, deps KernelDeps) (*KernelDevice, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	created, err := deps.Links.EnsureWireGuardLink(o.Name, o.MTU)
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: create kernel link: %w", o.Name, err)
	}
	log := o.logger()
	log.Info("wireguard kernel device ready", "interface", o.Name, "mtu", o.MTU, "created", created)
	return &KernelDevice{
		configured: configured{name: o.Name, backend: BackendKernel, wg: deps.WG, log: log},
		links:      deps.Links,
		closers:    deps.Closers,
	}, nil
}

// OpenKernel creates (or adopts) a kernel WireGuard link, in o.NetNS when set.
func OpenKernel(ctx context.Context, o Options) (Device, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	ns, err := openNetNS(o.NetNS)
	if err != nil {
		return nil, err
	}
	var h *netlink.Handle
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("wireguard %s: netlink: %w", o.Name, err)
	}
	var wg *wgctrl.Client
	if err := inNetNS(ns, func() (err error) { wg, err = wgctrl.New(); return err }); err != nil {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("wireguard %s: wgctrl: %w", o.Name, err)
	}
	d, err := NewKernelDevice(o, KernelDeps{
		Links:   netlinkLinks{h: h},
		WG:      wg,
		Closers: []io.Closer{wg, closerFunc(func() error { h.Close(); return nil }), nsCloser(ns)},
	})
	if err != nil {
		wg.Close()
		h.Close()
		ns.Close()
		return nil, err
	}
	return d, nil
}

// SetMTU changes the link MTU.
func (d *KernelDevice) SetMTU(mtu int) error {
	if err := d.links.SetMTU(d.name, mtu); err != nil {
		return fmt.Errorf("wireguard %s: set mtu %d: %w", d.name, mtu, err)
	}
	return nil
}

// Close deletes the link.
func (d *KernelDevice) Close() error {
	errs := []error{d.links.DeleteLink(d.name)}
	for _, c := range d.closers {
		errs = append(errs, c.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wireguard %s: close: %w", d.name, err)
	}
	return nil
}

type netlinkLinks struct{ h *netlink.Handle }

func (l netlinkLinks) EnsureWireGuardLink(name string, mtu int) (bool, error) {
	created := false
	link, err := l.h.LinkByName(name)
	switch {
	case err == nil:
		if link.Type() != "wireguard" {
			return false, fmt.Errorf("link %s exists with type %q, not wireguard", name, link.Type())
		}
		if link.Attrs().MTU != mtu {
			if err := l.h.LinkSetMTU(link, mtu); err != nil {
				return false, fmt.Errorf("set mtu: %w", err)
			}
		}
	default:
		err := l.h.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
		if errors.Is(err, unix.EOPNOTSUPP) {
			return false, fmt.Errorf("%w: %v", ErrKernelUnsupported, err)
		}
		if err != nil {
			return false, fmt.Errorf("add link: %w", err)
		}
		created = true
		if link, err = l.h.LinkByName(name); err != nil {
			return false, fmt.Errorf("find new link: %w", err)
		}
	}
	if err := l.h.LinkSetUp(link); err != nil {
		return created, fmt.Errorf("set up: %w", err)
	}
	return created, nil
}

func (l netlinkLinks) SetMTU(name string, mtu int) error {
	link, err := l.h.LinkByName(name)
	if err != nil {
		return err
	}
	return l.h.LinkSetMTU(link, mtu)
}

func (l netlinkLinks) DeleteLink(name string) error {
	link, err := l.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return l.h.LinkDel(link)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func nsCloser(ns netns.NsHandle) io.Closer {
	return closerFunc(func() error {
		if ns.IsOpen() {
			return ns.Close()
		}
		return nil
	})
}
