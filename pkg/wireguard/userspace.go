package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// UserspaceDevice is an embedded wireguard-go device over a TUN interface.
// Its UAPI socket (/var/run/wireguard/<name>.sock) lets wg(8) and wgctrl
// inspect and configure it like any userspace WireGuard.
type UserspaceDevice struct {
	configured
	dev  *device.Device
	uapi net.Listener
	// uapiPath is removed by Close when the socket was claimed but never
	// listened on (the listener removes it itself otherwise).
	uapiPath string
	nl       *netlink.Handle
	ns       netns.NsHandle
	client   *wgctrl.Client
	serving  sync.WaitGroup
	once     sync.Once
	err      error
}

// OpenUserspace creates a TUN interface and runs wireguard-go on it, in
// o.NetNS when set (the interface, the UDP sockets and every later rebind
// live in that namespace).
func OpenUserspace(ctx context.Context, o Options) (dev Device, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	log := o.logger()
	d := &UserspaceDevice{configured: configured{name: o.Name, backend: BackendUserspace, log: log}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.ns, err = openNetNS(o.NetNS); err != nil {
		return nil, err
	}
	// Claim the UAPI socket first: a name already used by another
	// userspace device fails here, before anything is created.
	uapiFile, err := ipc.UAPIOpen(o.Name)
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: uapi socket /var/run/wireguard/%s.sock (is another device using this name?): %w", o.Name, o.Name, err)
	}
	defer uapiFile.Close()
	d.uapiPath = "/var/run/wireguard/" + o.Name + ".sock"
	var bind conn.Bind = conn.NewDefaultBind()
	if d.ns.IsOpen() {
		bind = &nsBind{Bind: bind, ns: d.ns}
	}
	// The TUN and the device are created inside the namespace: wireguard-go
	// reads the MTU through an ioctl by interface name.
	err = inNetNS(d.ns, func() error {
		t, err := tun.CreateTUN(o.Name, o.MTU)
		if err != nil {
			return fmt.Errorf("create tun: %w", err)
		}
		d.dev = device.NewDevice(t, bind, deviceLogger(log, o.Name))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: %w", o.Name, err)
	}
	d.uapi, err = ipc.UAPIListen(o.Name, uapiFile)
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: uapi listen: %w", o.Name, err)
	}
	d.serving.Add(1)
	go d.serveUAPI()

	if d.ns.IsOpen() {
		d.nl, err = netlink.NewHandleAt(d.ns)
	} else {
		d.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: netlink: %w", o.Name, err)
	}
	link, err := d.nl.LinkByName(o.Name)
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: find tun link: %w", o.Name, err)
	}
	if err := d.nl.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("wireguard %s: set up: %w", o.Name, err)
	}
	if err := d.dev.Up(); err != nil {
		return nil, fmt.Errorf("wireguard %s: device up: %w", o.Name, err)
	}
	if d.client, err = wgctrl.New(); err != nil {
		return nil, fmt.Errorf("wireguard %s: wgctrl: %w", o.Name, err)
	}
	d.configured.wg = d.client
	log.Info("wireguard userspace device ready", "interface", o.Name, "mtu", o.MTU, "netns", o.NetNS)
	return d, nil
}

func (d *UserspaceDevice) serveUAPI() {
	defer d.serving.Done()
	for {
		c, err := d.uapi.Accept()
		if err != nil {
			return
		}
		go d.dev.IpcHandle(c)
	}
}

// SetMTU changes the TUN interface MTU; wireguard-go follows it.
func (d *UserspaceDevice) SetMTU(mtu int) error {
	link, err := d.nl.LinkByName(d.name)
	if err == nil {
		err = d.nl.LinkSetMTU(link, mtu)
	}
	if err != nil {
		return fmt.Errorf("wireguard %s: set mtu %d: %w", d.name, mtu, err)
	}
	return nil
}

// Close stops the device; the TUN interface and the UAPI socket go with it.
func (d *UserspaceDevice) Close() error {
	d.once.Do(func() {
		var errs []error
		if d.uapi != nil {
			errs = append(errs, d.uapi.Close())
		} else if d.uapiPath != "" {
			os.Remove(d.uapiPath)
		}
		if d.dev != nil {
			d.dev.Close()
		}
		d.serving.Wait()
		if d.client != nil {
			errs = append(errs, d.client.Close())
		}
		if d.nl != nil {
			d.nl.Close()
		}
		if d.ns.IsOpen() {
			errs = append(errs, d.ns.Close())
		}
		if err := errors.Join(errs...); err != nil {
			d.err = fmt.Errorf("wireguard %s: close: %w", d.name, err)
		}
	})
	return d.err
}

// nsBind opens its UDP sockets inside a network namespace, whichever
// goroutine (and OS thread) wireguard-go calls Open from.
type nsBind struct {
	conn.Bind
	ns netns.NsHandle
}

func (b *nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	nserr := inNetNS(b.ns, func() error {
		fns, actual, err = b.Bind.Open(port)
		return nil
	})
	if nserr != nil {
		return nil, 0, nserr
	}
	return fns, actual, err
}

func deviceLogger(log *slog.Logger, name string) *device.Logger {
	l := log.With("interface", name)
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if l.Enabled(context.Background(), slog.LevelDebug) {
				l.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			// wireguard-go re-reads the MTU by interface name from whatever
			// thread handles a TUN event; outside the device's namespace that
			// fails harmlessly (the MTU is set through SetMTU).
			if strings.HasPrefix(msg, "Failed to load updated MTU") {
				l.Debug(msg)
				return
			}
			l.Warn(msg)
		},
	}
}
