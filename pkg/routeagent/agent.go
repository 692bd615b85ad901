package routeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	weftv1alpha1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/netplan"
	"github.com/weftnet/weft/pkg/route"
)

// Defaults and the contract with the gateway.
const (
	// DefaultNamespace holds the gateway Lease and the RemoteClusters.
	DefaultNamespace = "weft-system"
	// DefaultLeaseName is the Lease the active gateway holds.
	DefaultLeaseName = "weft-gateway"
	// DefaultResync is the period of full passes.
	DefaultResync = 30 * time.Second
	// TunnelOverhead is what the tunnel MTU leaves of the underlay MTU
	// (WireGuard over IPv6, the worst case; DESIGN section 3).
	TunnelOverhead = 80
)

// Retry backoff after a failed pass: doubling from retryMin, at most the
// resync period.
const retryMin = 250 * time.Millisecond

// Options configure an [Agent].
type Options struct {
	// RESTConfig reaches the cluster's API server (required).
	RESTConfig *rest.Config
	// NodeName is the node the agent runs on (required).
	NodeName string
	// Namespace of the gateway Lease and the RemoteClusters; "" means
	// [DefaultNamespace].
	Namespace string
	// LeaseName is the gateway Lease; "" means [DefaultLeaseName].
	LeaseName string
	// ClusterCIDRs are the local pod and service CIDRs (required).
	ClusterCIDRs []netip.Prefix
	// PodNetworkAddr overrides the node's pod-network address (the source
	// of weft's routes); the zero Addr means the first host address of the
	// node's spec.podCIDR. It must be assigned to an interface of the node:
	// the kernel refuses a route source that is not a local address.
	PodNetworkAddr netip.Addr
	// TunnelMTU is the tunnel MTU; 0 means the MTU of the interface
	// holding the node's InternalIP minus [TunnelOverhead].
	TunnelMTU int
	// CNIInterface is the interface replies from remote clusters arrive
	// on; "" means the interface holding the pod-network address (none if
	// no interface holds it).
	CNIInterface string
	// Params name weft's devices, table and rule priority (WireGuardDevice
	// is the gateway's device, which may be named per node); zero fields
	// take netplan's defaults.
	Params netplan.Params
	// Resync is the period of full passes, which re-add what someone else
	// deleted; 0 means [DefaultResync].
	Resync time.Duration

	// Kernel applies routes, the rule, weft-vx and sysctls (required).
	Kernel route.Kernel
	// Tables applies iptables (required).
	Tables firewall.Tables
	// Links finds interfaces by address; required unless TunnelMTU and
	// CNIInterface are both set.
	Links Links

	// Logger receives the agent's records; nil discards.
	Logger *slog.Logger
	// Clock is the time source; nil means the real clock.
	Clock clock.WithTicker
}

// Status is what an [Agent] reports about itself.
type Status struct {
	// Synced says the informers have synced (passes have started).
	Synced bool
	// Passes counts the passes that read the cluster state.
	Passes int
	// Applies counts the passes that ran the reconcilers.
	Applies int
	// Plan is the last plan applied without error ([netplan.NodeState]
	// text); "" before the first.
	Plan string
	// Gateway is the active gateway node's name; "" when there is none.
	Gateway string
	// Err is the last pass's error; nil when it succeeded.
	Err error
}

// Agent is the route agent's controller. Create it with [New]; [Agent.Run]
// runs it.
type Agent struct {
	o      Options
	log    *slog.Logger
	clock  clock.WithTicker
	routes *route.Reconciler
	fw     *firewall.Reconciler
	wake   chan struct{}

	mu     sync.Mutex
	status Status
	ran    bool

	// Owned by the Run goroutine.
	lastPlan    string // plan of the last apply
	applied     bool   // the last apply of lastPlan succeeded
	lastGateway string // the active gateway as last logged
	lastNotes   string // the notes last logged
	failures    int
}

// New returns an Agent. It does no I/O.
func New(o Options) (*Agent, error) {
	if o.RESTConfig == nil {
		return nil, errors.New("routeagent: Options.RESTConfig is required")
	}
	if o.NodeName == "" {
		return nil, errors.New("routeagent: Options.NodeName is required")
	}
	if len(o.ClusterCIDRs) == 0 {
		return nil, errors.New("routeagent: Options.ClusterCIDRs is required (the local pod and service CIDRs)")
	}
	for i, p := range o.ClusterCIDRs {
		if !p.IsValid() || !p.Addr().Is4() || p.Masked() != p {
			return nil, fmt.Errorf("routeagent: Options.ClusterCIDRs[%d] %s: must be a canonical IPv4 prefix", i, p)
		}
	}
	if o.PodNetworkAddr.IsValid() && !o.PodNetworkAddr.Is4() {
		return nil, fmt.Errorf("routeagent: Options.PodNetworkAddr %s: must be IPv4", o.PodNetworkAddr)
	}
	if o.TunnelMTU != 0 && (o.TunnelMTU < netplan.MinMTU || o.TunnelMTU > netplan.MaxMTU) {
		return nil, fmt.Errorf("routeagent: Options.TunnelMTU %d: out of range %d..%d (0 derives it)", o.TunnelMTU, netplan.MinMTU, netplan.MaxMTU)
	}
	if o.CNIInterface != "" {
		if err := netplan.CheckInterfaceName(o.CNIInterface); err != nil {
			return nil, fmt.Errorf("routeagent: Options.CNIInterface: %w", err)
		}
	}
	if o.Kernel == nil || o.Tables == nil {
		return nil, errors.New("routeagent: Options.Kernel and Options.Tables are required")
	}
	if o.Links == nil && (o.TunnelMTU == 0 || o.CNIInterface == "") {
		return nil, errors.New("routeagent: Options.Links is required to derive the tunnel MTU or the CNI interface")
	}
	if o.Resync < 0 {
		return nil, fmt.Errorf("routeagent: Options.Resync %s: must not be negative", o.Resync)
	}
	if o.Resync == 0 {
		o.Resync = DefaultResync
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.LeaseName == "" {
		o.LeaseName = DefaultLeaseName
	}
	o.Params = o.Params.WithDefaults()
	if err := o.Params.Validate(); err != nil {
		return nil, fmt.Errorf("routeagent: %w", err)
	}
	o.ClusterCIDRs = slices.Clone(o.ClusterCIDRs)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	rt, err := route.New(route.Options{Kernel: o.Kernel, Params: o.Params, Logger: log.With("component", "route")})
	if err != nil {
		return nil, fmt.Errorf("routeagent: %w", err)
	}
	fw, err := firewall.New(firewall.Options{Tables: o.Tables, Logger: log.With("component", "firewall")})
	if err != nil {
		return nil, fmt.Errorf("routeagent: %w", err)
	}
	return &Agent{o: o, log: log, clock: o.Clock, routes: rt, fw: fw, wake: make(chan struct{}, 1)}, nil
}

// Status reports the agent's state; it is safe to call at any time.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Run watches the cluster and keeps the node's data plane in line until ctx
// is done; it returns nil then, once its informers have stopped. It
// returns an error only when its informer cache fails. Run may be called
// once.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.ran {
		a.mu.Unlock()
		return errors.New("routeagent: Run called twice")
	}
	a.ran = true
	a.mu.Unlock()

	a.log.Info("route agent starting", "node", a.o.NodeName, "namespace", a.o.Namespace, "lease", a.o.LeaseName,
		"cluster_cidrs", a.o.ClusterCIDRs, "wireguard_device", a.o.Params.WireGuardDevice, "resync", a.o.Resync)
	c, err := a.watch(ctx)
	if err != nil {
		return nil // watch gives up only when ctx is done
	}
	cctx, stop := context.WithCancel(ctx)
	cacheDone := make(chan struct{})
	var cacheErr error
	go func() {
		defer close(cacheDone)
		cacheErr = c.Start(cctx)
	}()
	defer func() {
		stop()
		<-cacheDone // the informers have stopped when Run returns
	}()
	if !c.WaitForCacheSync(cctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("routeagent: caches did not sync")
	}
	a.mu.Lock()
	a.status.Synced = true
	a.mu.Unlock()
	a.log.Info("caches synced")
	return a.loop(ctx, c, cacheDone, func() error { return cacheErr })
}

// newCache builds the informer cache: all Nodes, the gateway Lease and the
// RemoteClusters in the namespace.
func (a *Agent) newCache() (cache.Cache, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, coordinationv1.AddToScheme, weftv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("routeagent: scheme: %w", err)
		}
	}
	ns := map[string]cache.Config{a.o.Namespace: {}}
	c, err := cache.New(a.o.RESTConfig, cache.Options{
		Scheme:                      scheme,
		ReaderFailOnMissingInformer: true,
		DefaultTransform:            cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Node{}: {Transform: stripNode},
			&coordinationv1.Lease{}: {
				Namespaces: ns,
				Field:      fields.OneTermEqualSelector("metadata.name", a.o.LeaseName),
			},
			&weftv1alpha1.RemoteCluster{}: {Namespaces: ns},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("routeagent: informer cache: %w", err)
	}
	return c, nil
}

// watch builds the cache and registers the event handlers. It retries
// with backoff until ctx is done: while a kind is not served yet (before
// weft's CRDs are installed) and while the API server cannot be reached.
func (a *Agent) watch(ctx context.Context) (cache.Cache, error) {
	delay := time.Second
	for {
		c, err := a.newCache()
		if err == nil {
			err = a.register(ctx, c)
		}
		if err == nil {
			return c, nil
		}
		if meta.IsNoMatchError(err) {
			a.log.Warn("kind not served yet; retrying (are weft's CRDs installed?)", "err", err, "retry_in", delay)
		} else {
			a.log.Error("cannot watch the API server; retrying", "err", err, "retry_in", delay)
		}
		t := a.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C():
		}
		delay = min(2*delay, a.o.Resync)
	}
}

// register adds the informers and their event handlers to c.
func (a *Agent) register(ctx context.Context, c cache.Cache) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.poke() },
		UpdateFunc: func(any, any) { a.poke() },
		DeleteFunc: func(any) { a.poke() },
	}
	nodeHandler := handler
	nodeHandler.UpdateFunc = func(oldObj, newObj any) {
		if nodeChanged(oldObj, newObj) {
			a.poke()
		}
	}
	for _, w := range []struct {
		obj client.Object
		h   toolscache.ResourceEventHandler
	}{
		{&corev1.Node{}, nodeHandler},
		{&coordinationv1.Lease{}, handler},
		{&weftv1alpha1.RemoteCluster{}, handler},
	} {
		inf, err := c.GetInformer(ctx, w.obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("routeagent: watch %T: %w", w.obj, err)
		}
		if _, err := inf.AddEventHandler(w.h); err != nil {
			return fmt.Errorf("routeagent: watch %T: %w", w.obj, err)
		}
	}
	return nil
}

// stripNode keeps what the agent reads of a Node small in the cache.
func stripNode(in any) (any, error) {
	if n, ok := in.(*corev1.Node); ok {
		n.ManagedFields = nil
		n.Status.Images = nil
		n.Status.VolumesAttached = nil
		n.Status.VolumesInUse = nil
	}
	return in, nil
}

// nodeChanged reports whether an update changed what the agent reads of a
// Node (kubelet heartbeats do not).
func nodeChanged(oldObj, newObj any) bool {
	o, ok1 := oldObj.(*corev1.Node)
	n, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	return o.Spec.PodCIDR != n.Spec.PodCIDR || !slices.Equal(o.Spec.PodCIDRs, n.Spec.PodCIDRs) ||
		!slices.Equal(o.Status.Addresses, n.Status.Addresses)
}

// poke wakes the loop; wake-ups that arrive during a pass coalesce into one.
func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// loop runs passes: on events, on the resync ticker (full passes), when a
// retry is due and when the followed lease expires.
func (a *Agent) loop(ctx context.Context, r client.Reader, cacheDone <-chan struct{}, cacheErr func() error) error {
	ticker := a.clock.NewTicker(a.o.Resync)
	defer ticker.Stop()
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	full := true // the first pass applies whatever the plan
	for {
		wakeAt, err := a.pass(ctx, r, full)
		if ctx.Err() != nil {
			return nil
		}
		now := a.clock.Now()
		if err != nil {
			a.failures++
			delay := min(retryMin<<min(a.failures-1, 16), a.o.Resync)
			a.log.Error("pass failed; retrying", "err", err, "retry_in", delay, "failures", a.failures)
			if retryAt := now.Add(delay); wakeAt.IsZero() || retryAt.Before(wakeAt) {
				wakeAt = retryAt
			}
		} else {
			a.failures = 0
		}
		var timerC <-chan time.Time
		if !wakeAt.IsZero() {
			d := max(wakeAt.Sub(now), time.Millisecond)
			if timer == nil {
				timer = a.clock.NewTimer(d)
			} else {
				timer.Stop()
				timer.Reset(d)
			}
			timerC = timer.C()
		} else if timer != nil {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-cacheDone:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("routeagent: informer cache stopped: %w", cacheErr())
		case <-a.wake:
			full = false
		case <-timerC:
			full = false
		case <-ticker.C():
			full = true
		}
	}
}

// pass reads the cluster state, plans, and applies the plan when it changed
// (or always, when full). It returns when the followed lease expires (zero
// when there is none).
func (a *Agent) pass(ctx context.Context, r client.Reader, full bool) (wakeAt time.Time, err error) {
	defer func() {
		a.mu.Lock()
		a.status.Passes++
		a.status.Err = err
		a.mu.Unlock()
	}()
	var node corev1.Node
	if err := r.Get(ctx, client.ObjectKey{Name: a.o.NodeName}, &node); err != nil {
		return time.Time{}, fmt.Errorf("get node %s: %w", a.o.NodeName, err)
	}
	var lease *coordinationv1.Lease
	var l coordinationv1.Lease
	switch err := r.Get(ctx, client.ObjectKey{Namespace: a.o.Namespace, Name: a.o.LeaseName}, &l); {
	case err == nil:
		lease = &l
	case !apierrors.IsNotFound(err):
		return time.Time{}, fmt.Errorf("get lease %s/%s: %w", a.o.Namespace, a.o.LeaseName, err)
	}
	holder, ok, why := ActiveGateway(lease, a.clock.Now())
	var gw *corev1.Node
	if ok {
		wakeAt = holder.Expires
		if holder.Node == node.Name {
			gw = &node
		} else {
			var g corev1.Node
			switch err := r.Get(ctx, client.ObjectKey{Name: holder.Node}, &g); {
			case err == nil:
				gw = &g
			case apierrors.IsNotFound(err):
				why = fmt.Sprintf("lease holder %s is not a node", holder.Node)
			default:
				return wakeAt, fmt.Errorf("get gateway node %s: %w", holder.Node, err)
			}
		}
	}
	var rcs weftv1alpha1.RemoteClusterList
	if err := r.List(ctx, &rcs, client.InNamespace(a.o.Namespace)); err != nil {
		return wakeAt, fmt.Errorf("list RemoteClusters in %s: %w", a.o.Namespace, err)
	}

	cfg, err := a.config(&node)
	if err != nil {
		return wakeAt, err
	}
	in, notes, err := BuildInput(Input{Node: &node, Gateway: gw, RemoteClusters: rcs.Items, Config: cfg})
	if err != nil {
		return wakeAt, err
	}
	st, err := netplan.Plan(in)
	if err != nil {
		return wakeAt, fmt.Errorf("plan: %w", err) // BuildInput checked; not expected
	}
	gwName := ""
	if gw != nil {
		gwName = gw.Name
	}
	a.mu.Lock()
	a.status.Gateway = gwName
	a.mu.Unlock()
	a.logView(in, gwName, why, notes)

	plan := st.String()
	if !full && a.applied && plan == a.lastPlan {
		return wakeAt, nil
	}
	if plan != a.lastPlan {
		subnets := 0
		for _, rm := range in.Remotes {
			subnets += len(rm.Subnets)
		}
		a.log.Info("plan", "role", role(st.Gateway), "gateway", gwName, "gateway_ip", addrText(in.GatewayIP),
			"remote_clusters", len(in.Remotes), "remote_subnets", subnets, "routes", len(st.Routes),
			"tunnel_mtu", in.TunnelMTU, "cni_interface", in.CNIInterface, "pod_network_addr", in.PodNetworkAddr)
	}
	// The firewall first: a flow must not start through a new route before
	// its no-SNAT and FORWARD accepts exist (a masqueraded first packet
	// would pin the NAT in conntrack for the flow's lifetime).
	fch, ferr := a.fw.Reconcile(ctx, st.Firewall)
	rch, rerr := a.routes.Reconcile(ctx, st)
	a.lastPlan, a.applied = plan, rerr == nil && ferr == nil
	a.mu.Lock()
	a.status.Applies++
	if a.applied {
		a.status.Plan = plan
	}
	a.mu.Unlock()
	if len(rch)+len(fch) > 0 {
		a.log.Info("data plane changed", "full", full, "route_changes", countOps(rch, route.Change.String),
			"firewall_changes", countOps(fch, firewall.Change.String))
	} else {
		a.log.Debug("data plane in line", "full", full)
	}
	return wakeAt, errors.Join(rerr, ferr)
}

// config resolves the tunnel MTU and the CNI interface when they are not
// configured.
func (a *Agent) config(node *corev1.Node) (Config, error) {
	c := Config{
		ClusterCIDRs:   a.o.ClusterCIDRs,
		PodNetworkAddr: a.o.PodNetworkAddr,
		TunnelMTU:      a.o.TunnelMTU,
		CNIInterface:   a.o.CNIInterface,
		Params:         a.o.Params,
	}
	if c.TunnelMTU == 0 {
		ip, err := NodeIP(node)
		if err != nil {
			return c, err
		}
		l, ok, err := a.o.Links.LinkByAddr(ip)
		switch {
		case err != nil:
			return c, fmt.Errorf("derive tunnel MTU: find the interface of %s: %w", ip, err)
		case !ok:
			return c, fmt.Errorf("derive tunnel MTU: no interface holds the node's InternalIP %s (set the tunnel MTU)", ip)
		}
		c.TunnelMTU = l.MTU - TunnelOverhead
	}
	if c.CNIInterface == "" {
		pod, err := PodNetworkAddr(node, c.PodNetworkAddr)
		if err != nil {
			return c, err
		}
		l, ok, err := a.o.Links.LinkByAddr(pod)
		if err != nil {
			return c, fmt.Errorf("find the CNI interface (holding %s): %w", pod, err)
		}
		if ok && l.Name != a.o.Params.VXLANDevice && l.Name != a.o.Params.WireGuardDevice {
			c.CNIInterface = l.Name
		}
	}
	return c, nil
}

// logView logs the active gateway when it changes, and the notes when they
// change.
func (a *Agent) logView(in netplan.NodeInput, gw, why string, notes []string) {
	if g := fmt.Sprint(in.Gateway, gw, in.GatewayIP, why); g != a.lastGateway {
		a.lastGateway = g
		switch {
		case in.Gateway:
			a.log.Info("this node is the active gateway", "node", gw)
		case in.GatewayIP.IsValid():
			a.log.Info("active gateway", "node", gw, "ip", in.GatewayIP)
		case why != "":
			a.log.Info("no active gateway", "reason", why)
		default:
			a.log.Info("no usable active gateway", "node", gw)
		}
	}
	if n := strings.Join(notes, "\x00"); n != a.lastNotes {
		a.lastNotes = n
		for _, note := range notes {
			a.log.Warn("skipped", "what", note)
		}
	}
}

func role(gateway bool) string {
	if gateway {
		return "gateway"
	}
	return "node"
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// countOps summarises changes as "add=2 delete=1" (ops sorted).
func countOps[C any](changes []C, text func(C) string) string {
	counts := map[string]int{}
	for _, c := range changes {
		op, _, _ := strings.Cut(text(c), " ")
		counts[op]++
	}
	ops := make([]string, 0, len(counts))
	for op := range counts {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = fmt.Sprintf("%s=%d", op, counts[op])
	}
	return strings.Join(parts, " ")
}

// CleanupOptions configure [Cleanup].
type CleanupOptions struct {
	// Kernel and Tables are where weft's state is removed (required).
	Kernel route.Kernel
	Tables firewall.Tables
	// Params name weft's table, rule priority and VXLAN device; zero
	// fields take netplan's defaults.
	Params netplan.Params
	// Logger receives one record per removal and a summary; nil discards.
	Logger *slog.Logger
}

// Cleanup removes everything the route agent adds: the routes in weft's
// table, the rule, weft-vx, the WEFT-* chains the route agent owns and the
// jumps into them. Sysctls stay as they are. Running it again changes
// nothing.
func Cleanup(ctx context.Context, o CleanupOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Kernel == nil || o.Tables == nil {
		return errors.New("routeagent: cleanup: CleanupOptions.Kernel and CleanupOptions.Tables are required")
	}
	rt, err := route.New(route.Options{Kernel: o.Kernel, Params: o.Params, Logger: log.With("component", "route")})
	if err != nil {
		return fmt.Errorf("routeagent: cleanup: %w", err)
	}
	fw, err := firewall.New(firewall.Options{Tables: o.Tables, Logger: log.With("component", "firewall")})
	if err != nil {
		return fmt.Errorf("routeagent: cleanup: %w", err)
	}
	rch, rerr := rt.Cleanup(ctx)
	fch, ferr := fw.Cleanup(ctx)
	log.Info("cleanup done", "route_changes", countOps(rch, route.Change.String), "firewall_changes", countOps(fch, firewall.Change.String))
	if err := errors.Join(rerr, ferr); err != nil {
		return fmt.Errorf("routeagent: cleanup: %w", err)
	}
	return nil
}
