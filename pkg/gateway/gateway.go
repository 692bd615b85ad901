package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	brokerv1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
)

// Gateway is one gateway node's process: leader election, and the active
// gateway's work while it holds the Lease.
type Gateway struct {
	o   Options
	log *slog.Logger

	kube kubernetes.Interface
	// lease has its own client (and client-side rate limiter), so that
	// other API calls never delay a renewal.
	lease kubernetes.Interface
	crd   ctrlclient.Client
	sec   secrets

	// objMu serializes writes of the Gateway object between the passive
	// path and the active one; active says which one owns it.
	objMu  sync.Mutex
	obj    *objects
	active bool
}

// New checks the options and returns a Gateway; Run starts it. New does
// no I/O.
func New(o Options) (*Gateway, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(o.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("gateway: kubernetes client: %w", err)
	}
	lease, err := kubernetes.NewForConfig(rest.CopyConfig(o.RESTConfig))
	if err != nil {
		return nil, fmt.Errorf("gateway: kubernetes client: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("gateway: scheme: %w", err)
	}
	if err := weftv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("gateway: scheme: %w", err)
	}
	crd, err := ctrlclient.New(o.RESTConfig, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("gateway: weft.io client: %w", err)
	}
	log := o.Logger.With("node", o.NodeName, "cluster", o.ClusterID)
	return &Gateway{
		o: o, log: log, kube: kube, lease: lease, crd: crd,
		sec: secrets{kube: kube, ns: o.Namespace},
		obj: &objects{c: crd, ns: o.Namespace, log: log, node: o.NodeName},
	}, nil
}

// activeRun is one term as the active gateway.
type activeRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// Run takes part in leader election until ctx ends (it then returns nil)
// or until, having been the active gateway, it lost the Lease (it returns
// [ErrLostLeadership]) or the active gateway failed for good (it returns
// that error). In every case the device is closed before Run returns, and
// before the Lease is released.
func (g *Gateway) Run(ctx context.Context) error {
	g.log.Info("gateway starting", "namespace", g.o.Namespace, "device", g.o.Device.Name, "backend", g.o.Device.Backend,
		"listen_port", g.o.Device.ListenPort, "lease", LeaseName,
		"lease_duration", g.o.LeaderElection.LeaseDuration, "renew_deadline", g.o.LeaderElection.RenewDeadline,
		"retry_period", g.o.LeaderElection.RetryPeriod)
	if n, err := g.kube.CoreV1().Nodes().Get(ctx, g.o.NodeName, metav1.GetOptions{}); err == nil {
		g.objMu.Lock()
		g.obj.uid = n.UID // the Gateway object is owned by its Node
		g.objMu.Unlock()
	} else {
		g.log.Warn("cannot read this node", "err", err)
	}
	g.writePassive(ctx, "")

	// The elector's context is not ctx: on shutdown the device is closed
	// first, and only then is the elector stopped (releasing the Lease).
	leCtx, leCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer leCancel()
	var (
		mu       sync.Mutex
		stopped  bool
		term     *activeRun
		passives sync.WaitGroup // passive status writes started by OnNewLeader
	)
	defer passives.Wait()
	stopActive := func() {
		mu.Lock()
		stopped = true
		r := term
		mu.Unlock()
		if r != nil {
			r.cancel()
			<-r.done
		}
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaseName, Namespace: g.o.Namespace},
		Client:     g.lease.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: g.o.NodeName},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            LeaseName,
		LeaseDuration:   g.o.LeaderElection.LeaseDuration,
		RenewDeadline:   g.o.LeaderElection.RenewDeadline,
		RetryPeriod:     g.o.LeaderElection.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				mu.Lock()
				if stopped {
					mu.Unlock()
					return
				}
				actx, cancel := context.WithCancel(lctx)
				r := &activeRun{cancel: cancel, done: make(chan struct{})}
				term = r
				mu.Unlock()
				g.log.Info("became the active gateway")
				err := g.runActive(actx)
				if err != nil && actx.Err() == nil {
					g.log.Error("active gateway failed; giving up the lease", "err", err)
					r.err = err
				}
				cancel()
				close(r.done)
				if r.err != nil {
					leCancel()
				}
			},
			OnStoppedLeading: stopActive,
			OnNewLeader: func(id string) {
				if id == g.o.NodeName {
					return
				}
				g.log.Info("another node is the active gateway", "leader", id)
				mu.Lock()
				defer mu.Unlock()
				if stopped {
					return // Run is returning
				}
				passives.Add(1)
				go func() {
					defer passives.Done()
					g.writePassive(ctx, id)
				}()
			},
		},
	})
	if err != nil {
		return fmt.Errorf("gateway: leader election: %w", err)
	}
	go func() {
		select {
		case <-ctx.Done():
			stopActive()
			leCancel()
		case <-leCtx.Done():
		}
	}()
	le.Run(leCtx)
	stopActive()

	mu.Lock()
	r := term
	mu.Unlock()
	// Best effort and short: on shutdown the API server may be going away
	// too, and the whole stop should fit a 5 s grace period.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	g.writePassive(wctx, "")
	cancel()
	switch {
	case r != nil && r.err != nil:
		return r.err
	case ctx.Err() != nil:
		g.log.Info("gateway stopped")
		return nil
	case r != nil:
		g.log.Error("lost the leader lease; device closed")
		return ErrLostLeadership
	}
	return nil
}

// writePassive writes the Gateway object as passive, unless this process
// is the active gateway. Errors are logged: the status is informational.
func (g *Gateway) writePassive(ctx context.Context, leader string) {
	g.objMu.Lock()
	defer g.objMu.Unlock()
	if g.active {
		return
	}
	msg := "waiting for the lease " + LeaseName
	if leader != "" {
		msg = "the lease " + LeaseName + " is held by " + leader
	}
	now := metav1.NewTime(g.o.Clock.Now().Truncate(time.Second))
	st := weftv1.GatewayStatus{
		HAStatus:      weftv1.HAPassive,
		LocalEndpoint: weftv1.EndpointSpec{Gateway: g.o.NodeName},
		Conditions: []metav1.Condition{{
			Type: ConditionLeader, Status: metav1.ConditionFalse, Reason: "Passive", Message: msg, LastTransitionTime: now,
		}},
	}
	if err := g.obj.writeGateway(ctx, st); err != nil && ctx.Err() == nil {
		g.log.Warn("writing passive gateway status failed", "err", err)
	}
}

// setActive switches ownership of the Gateway object.
func (g *Gateway) setActive(v bool) {
	g.objMu.Lock()
	g.active = v
	g.objMu.Unlock()
}

// writeActive writes the Gateway object's status as the active gateway.
func (g *Gateway) writeActive(ctx context.Context, st weftv1.GatewayStatus) error {
	g.objMu.Lock()
	defer g.objMu.Unlock()
	return g.obj.writeGateway(ctx, st)
}

// clusterInfo is what the cluster declares at join.
func clusterInfo(o *Options) *brokerv1.ClusterInfo {
	ci := &brokerv1.ClusterInfo{Id: o.ClusterID, WantsGlobalnet: false}
	for _, p := range o.PodCIDRs {
		ci.PodCidrs = append(ci.PodCidrs, p.String())
	}
	for _, p := range o.ServiceCIDRs {
		ci.ServiceCidrs = append(ci.ServiceCidrs, p.String())
	}
	return ci
}
