package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Device is a WireGuard interface owned by this process.
type Device interface {
	// Name is the interface name.
	Name() string
	// Backend is the implementation in use (kernel or userspace).
	Backend() Backend
	// Apply makes the device match cfg with the minimal change and returns
	// the change it made (empty when nothing differed).
	Apply(ctx context.Context, cfg Config) (Plan, error)
	// State reports the observed configuration and peer statistics.
	State(ctx context.Context) (State, error)
	// SetMTU changes the interface MTU in place.
	SetMTU(mtu int) error
	// Close removes the interface and releases its resources.
	Close() error
}

// Options configure [Open].
type Options struct {
	// Name is the interface name (at most 15 bytes).
	Name string
	// MTU of the interface; required (the gateway derives it from the
	// underlay: underlay MTU minus 80).
	MTU int
	// Backend selects the implementation; "" means auto.
	Backend Backend
	// NetNS, when set, is the path of a network namespace (for example
	// /var/run/netns/x) in which to create the interface and its sockets.
	// Empty means the namespace this process runs in.
	NetNS string
	// Logger receives device events; nil discards them.
	Logger *slog.Logger
}

func (o Options) validate() error {
	if o.Name == "" || len(o.Name) > 15 {
		return fmt.Errorf("wireguard: interface name %q: want 1-15 bytes", o.Name)
	}
	if o.MTU < 576 || o.MTU > 65535 {
		return fmt.Errorf("wireguard: interface %s: mtu %d: want 576-65535", o.Name, o.MTU)
	}
	if o.Backend != "" {
		if _, err := ParseBackend(string(o.Backend)); err != nil {
			return err
		}
	}
	return nil
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ErrKernelUnsupported means the kernel has no WireGuard support.
var ErrKernelUnsupported = errors.New("kernel WireGuard not supported")

// Open creates the interface with the selected backend. With auto it tries
// the kernel first and falls back to userspace when the kernel has no
// WireGuard module, logging which it chose.
func Open(ctx context.Context, o Options) (Device, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	log := o.logger()
	switch o.Backend {
	case BackendKernel:
		return OpenKernel(ctx, o)
	case BackendUserspace:
		return OpenUserspace(ctx, o)
	}
	d, err := OpenKernel(ctx, o)
	if err == nil {
		log.Info("wireguard backend selected", "backend", BackendKernel, "interface", o.Name)
		return d, nil
	}
	if !errors.Is(err, ErrKernelUnsupported) {
		return nil, err
	}
	log.Info("wireguard backend selected", "backend", BackendUserspace, "interface", o.Name, "reason", err.Error())
	return OpenUserspace(ctx, o)
}

// Configurator reads and writes WireGuard configuration; *wgctrl.Client
// implements it for both backends (genetlink for kernel devices, the UAPI
// socket for userspace ones).
type Configurator interface {
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
}

// configured implements Apply and State over a Configurator; both backends
// embed it.
type configured struct {
	name    string
	backend Backend
	wg      Configurator
	log     *slog.Logger
	mu      sync.Mutex // serializes Apply: observe, diff, configure
}

func (c *configured) Name() string     { return c.name }
func (c *configured) Backend() Backend { return c.backend }

func (c *configured) State(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	d, err := c.wg.Device(c.name)
	if err != nil {
		return State{}, fmt.Errorf("wireguard %s: read state: %w", c.name, err)
	}
	return stateFromDevice(d, c.backend), nil
}

func (c *configured) Apply(ctx context.Context, cfg Config) (Plan, error) {
	if err := cfg.Validate(); err != nil {
		return Plan{}, fmt.Errorf("wireguard %s: %w", c.name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	observed, err := c.State(ctx)
	if err != nil {
		return Plan{}, err
	}
	plan := Diff(observed, cfg)
	if plan.Empty() {
		return plan, nil
	}
	if err := c.wg.ConfigureDevice(c.name, plan.wgConfig()); err != nil {
		return Plan{}, fmt.Errorf("wireguard %s: configure (%d added, %d updated, %d removed peers): %w",
			c.name, len(plan.Add), len(plan.Update), len(plan.Remove), err)
	}
	c.log.Info("wireguard configured", "interface", c.name,
		"added", len(plan.Add), "updated", len(plan.Update), "removed", len(plan.Remove),
		"key_changed", plan.SetPrivateKey != nil, "port_changed", plan.SetListenPort != nil)
	return plan, nil
}
