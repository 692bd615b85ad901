package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	brokerv1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/broker/validate"
	"github.com/weftnet/weft/pkg/wireguard"
)

// active is the state of one term as the active gateway.
type active struct {
	g   *Gateway
	o   *Options
	log *slog.Logger

	node    NodeInfo
	key     wireguard.PrivateKey
	dev     wireguard.Device
	prober  *Prober // nil without a pod-network address
	member  *client.Member
	synced  bool // the member has delivered a snapshot
	seeded  Remotes
	remotes Remotes

	applied      []wireguard.Peer // last desired peers applied without error (nil: apply)
	deviceErr    error
	since        map[string]peerSince // cluster id -> when its peer got its current key/endpoint
	rejections   map[string]string    // logged rejections (record -> reason)
	withdrawn    map[string]bool      // own stale endpoints withdrawn (gateway)
	endpoint     *brokerv1.Endpoint   // what this gateway publishes (nil: cannot)
	endpointErr  error
	conds        []metav1.Condition
	nodeWarnings []string // logged once until they change
}

type peerSince struct {
	key      wireguard.PublicKey
	endpoint netip.AddrPort
	at       time.Time
}

// backoff retries fn with exponential backoff (1 s to 30 s) until it
// succeeds, fails permanently, or ctx ends.
func (a *active) backoff(ctx context.Context, what string, fn func() (permanent bool, err error)) error {
	wait := time.Second
	for {
		permanent, err := fn()
		if err == nil {
			return nil
		}
		if permanent {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.log.Warn(what+" failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.o.Clock.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// runActive is the active gateway's work; it returns when ctx ends (nil)
// or on a failure retrying cannot fix. The device is closed on return.
func (g *Gateway) runActive(ctx context.Context) error {
	a := &active{
		g: g, o: &g.o, log: g.log.With("role", "active"),
		since: map[string]peerSince{}, rejections: map[string]string{}, withdrawn: map[string]bool{},
	}
	g.setActive(true)
	defer g.setActive(false)
	meta.SetStatusCondition(&a.conds, metav1.Condition{Type: ConditionLeader, Status: metav1.ConditionTrue, Reason: "Active",
		Message: "this node holds the lease " + LeaseName, LastTransitionTime: a.now()})

	if err := a.backoff(ctx, "read node", func() (bool, error) { return a.readNode(ctx) }); err != nil {
		return ignoreCanceled(ctx, err)
	}
	if err := a.backoff(ctx, "read or create the key secret", func() (bool, error) {
		k, created, err := g.sec.ensureKey(ctx)
		if err != nil {
			return false, err
		}
		a.key = k
		if created {
			a.log.Info("created the cluster's WireGuard key", "secret", KeySecretName, "public_key", k.Public())
		}
		return false, nil
	}); err != nil {
		return ignoreCanceled(ctx, err)
	}

	mtu := a.o.Device.MTU
	if mtu == 0 {
		under, err := UnderlayMTU(a.o.Device.NetNS, a.node.InternalIP)
		if err != nil {
			under = 1500
			a.log.Warn("cannot find the underlay interface; assuming MTU 1500", "internal_ip", a.node.InternalIP, "err", err)
		}
		mtu = under - MTUOverhead
	}
	dev, err := wireguard.Open(ctx, wireguard.Options{
		Name: a.o.Device.Name, MTU: mtu, Backend: a.o.Device.Backend, NetNS: a.o.Device.NetNS, Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("gateway: open wireguard device %s: %w", a.o.Device.Name, err)
	}
	a.dev = dev
	defer func() {
		if err := dev.Close(); err != nil {
			a.log.Warn("closing the wireguard device", "err", err)
		} else {
			a.log.Info("wireguard device closed", "device", a.o.Device.Name)
		}
	}()
	a.log.Info("wireguard device up", "device", dev.Name(), "backend", dev.Backend(), "mtu", mtu,
		"listen_port", a.o.Device.ListenPort, "public_key", a.key.Public())
	a.buildEndpoint()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if a.node.PodNetworkIP.IsValid() {
		p, err := NewProber(ProberOptions{
			Source: a.node.PodNetworkIP, NetNS: a.o.Device.NetNS, Interval: a.o.Probe.Interval,
			Window: a.o.Probe.Window, Unprivileged: a.o.Probe.Unprivileged, Clock: a.o.Clock, Logger: a.log,
		})
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		a.prober = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				a.log.Error("health prober stopped", "err", err)
			}
		}()
	} else {
		a.log.Warn("no pod-network address (node has no spec.podCIDR and no --health-check-ip): no health probes")
	}

	// Peers from the RemoteClusters a former active gateway wrote, until
	// the broker's snapshot arrives.
	if items, err := g.obj.listRemoteClusters(ctx); err != nil {
		a.log.Warn("cannot read existing RemoteClusters; starting without peers", "err", err)
	} else if len(items) > 0 {
		a.seeded = RemotesFromObjects(items, a.peerOptions())
		a.log.Info("peers seeded from existing RemoteClusters until the broker answers", "clusters", len(a.seeded.Clusters))
	}
	a.reconcile(ctx)

	members := make(chan *client.Member, 1)
	fatal := make(chan error, 1) // failures retrying cannot fix
	wg.Add(1)
	go func() {
		defer wg.Done()
		creds, err := a.credentials(ctx)
		if err != nil {
			if ctx.Err() == nil {
				fatal <- fmt.Errorf("gateway: broker credentials: %w", err)
			}
			return
		}
		m, err := client.NewMember(client.MemberOptions{
			Credentials: creds, Logger: a.log.With("component", "broker-member"),
			OnRenew: func(c *client.Credentials) {
				// Called from the member's goroutines, which must not
				// wait for the API server: store in the background.
				wg.Add(1)
				go func() {
					defer wg.Done()
					a.persistRenewed(ctx, c)
				}()
			},
		})
		if err != nil {
			fatal <- fmt.Errorf("gateway: broker member: %w", err)
			return
		}
		members <- m
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("broker member stopped", "err", err)
		}
	}()

	statusTick := a.o.Clock.NewTicker(a.o.StatusInterval)
	defer statusTick.Stop()
	nodeTick := a.o.Clock.NewTicker(a.o.NodeResync)
	defer nodeTick.Stop()
	var changed <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return err
		case m := <-members:
			a.member = m
			changed = m.Changed()
			if a.endpoint != nil {
				m.PublishEndpoint(a.endpoint)
			}
			a.reconcile(ctx)
		case <-changed:
			a.reconcile(ctx)
		case <-nodeTick.C():
			if _, err := a.readNode(ctx); err != nil {
				a.log.Warn("re-reading the node failed", "err", err)
				continue
			}
			old := a.endpoint
			a.buildEndpoint()
			if a.endpoint != nil && a.member != nil && !proto.Equal(old, a.endpoint) {
				a.log.Info("node changed: republishing the endpoint")
				a.member.PublishEndpoint(a.endpoint)
			}
			a.reconcile(ctx)
		case <-statusTick.C():
			if a.deviceErr != nil {
				a.applyDevice(ctx) // retry a failed apply
			}
			a.writeStatus(ctx)
		}
	}
}

func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (a *active) now() metav1.Time { return metav1.NewTime(a.o.Clock.Now().Truncate(time.Second)) }

func (a *active) peerOptions() PeerOptions {
	return PeerOptions{ClusterID: a.o.ClusterID, LocalCIDRs: a.o.localCIDRs(), Keepalive: a.o.Keepalive}
}

// readNode reads the Node object into a.node.
func (a *active) readNode(ctx context.Context) (permanent bool, err error) {
	n, err := a.g.kube.CoreV1().Nodes().Get(ctx, a.o.NodeName, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("read node %s: %w", a.o.NodeName, err)
	}
	info, warnings, err := NodeInfoFrom(n, NodeOverrides{PublicIP: a.o.PublicIP, PodNetworkIP: a.o.HealthCheckIP})
	if !slices.Equal(warnings, a.nodeWarnings) {
		for _, w := range warnings {
			a.log.Warn(w)
		}
		a.nodeWarnings = warnings
	}
	if err != nil {
		return false, err // the node may get its address later
	}
	if info != a.node {
		a.log.Info("node", "internal_ip", info.InternalIP, "public_ip", addrText(info.PublicIP), "pod_network_ip", addrText(info.PodNetworkIP))
	}
	a.node = info
	a.g.objMu.Lock()
	a.g.obj.uid = types.UID(info.UID)
	a.g.objMu.Unlock()
	return false, nil
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// buildEndpoint computes the endpoint record to publish, checked as the
// broker will check it.
func (a *active) buildEndpoint() {
	pub := a.key.Public()
	ep := &brokerv1.Endpoint{
		ClusterId: a.o.ClusterID, Gateway: a.o.NodeName, PublicKey: pub[:],
		PrivateIp: a.node.InternalIP.String(), PublicIp: addrText(a.node.PublicIP),
		Port: uint32(a.o.Device.ListenPort), HealthCheckIp: addrText(a.node.PodNetworkIP),
		Backend: backendFromString(string(a.dev.Backend())),
	}
	for _, p := range a.o.localCIDRs() {
		ep.Subnets = append(ep.Subnets, p.String())
	}
	self := &brokerv1.Cluster{Id: a.o.ClusterID, PodCidrs: clusterInfo(a.o).PodCidrs, ServiceCidrs: clusterInfo(a.o).ServiceCidrs}
	if err := validate.Endpoint(ep, self); err != nil && ep.HealthCheckIp != "" {
		if validate.Endpoint(&brokerv1.Endpoint{ClusterId: ep.ClusterId, Gateway: ep.Gateway, PublicKey: ep.PublicKey,
			PrivateIp: ep.PrivateIp, PublicIp: ep.PublicIp, Port: ep.Port, Subnets: ep.Subnets, Backend: ep.Backend}, self) == nil {
			a.log.Warn("health-check address not publishable; publishing without it", "health_check_ip", ep.HealthCheckIp, "err", err)
			ep.HealthCheckIp = ""
		}
	}
	if err := validate.Endpoint(ep, self); err != nil {
		a.endpoint, a.endpointErr = nil, fmt.Errorf("endpoint record: %w", err)
		a.log.Error("cannot publish this gateway's endpoint", "err", err)
		return
	}
	a.endpoint, a.endpointErr = ep, nil
}

// credentials returns the stored broker credentials, or joins with the
// token and stores them. It retries until it succeeds or ctx ends.
func (a *active) credentials(ctx context.Context) (*client.Credentials, error) {
	var creds *client.Credentials
	err := a.backoff(ctx, "obtain broker credentials", func() (bool, error) {
		c, err := a.g.sec.credentials(ctx)
		switch {
		case err == nil:
			if c.ClusterID != a.o.ClusterID {
				return true, fmt.Errorf("secret %s/%s: credentials of cluster %q, but this is cluster %q",
					a.o.Namespace, CredentialsSecretName, c.ClusterID, a.o.ClusterID)
			}
			creds = c
			a.log.Info("using stored broker credentials", "secret", CredentialsSecretName, "broker", c.Addresses)
			return false, nil
		case !errors.Is(err, errNotFound):
			return false, err // present but unreadable: never fall back to the token
		}
		tok, err := a.g.sec.token(ctx)
		if err != nil {
			return false, fmt.Errorf("no credentials secret, and the join token: %w", err)
		}
		a.log.Info("joining the broker with the token", "secret", TokenSecretName)
		c, _, err = client.Join(ctx, client.JoinOptions{Token: tok, Cluster: clusterInfo(a.o)})
		if err != nil {
			return false, err
		}
		c, err = a.g.sec.storeCredentials(ctx, c, false)
		if err != nil {
			return false, fmt.Errorf("joined, but storing the credentials: %w", err)
		}
		creds = c
		a.log.Info("joined the broker; credentials stored", "secret", CredentialsSecretName, "broker", c.Addresses)
		return false, nil
	})
	return creds, err
}

// persistRenewed stores renewed credentials (called by the member).
func (a *active) persistRenewed(ctx context.Context, c *client.Credentials) {
	err := a.backoff(ctx, "store renewed broker credentials", func() (bool, error) {
		_, err := a.g.sec.storeCredentials(ctx, c, true)
		return false, err
	})
	if err != nil && ctx.Err() == nil {
		a.log.Error("renewed credentials not stored", "err", err)
		return
	}
	a.log.Info("renewed broker credentials stored", "secret", CredentialsSecretName)
}

// reconcile recomputes the desired peering and applies it to the device,
// the prober and the RemoteClusters.
func (a *active) reconcile(ctx context.Context) {
	var st *client.State
	if a.member != nil {
		st = a.member.State()
		if st.Revision > 0 && !a.synced {
			a.synced = true
			a.log.Info("broker snapshot received", "revision", st.Revision, "clusters", len(st.Clusters), "endpoints", len(st.Endpoints))
		}
	}
	if a.synced {
		a.remotes = ComputeRemotes(st, a.peerOptions())
		a.withdrawStale(st)
	} else {
		a.remotes = a.seeded
	}
	a.logRejections()
	a.applyDevice(ctx)
	if a.prober != nil {
		targets := map[string]netip.Addr{}
		for _, r := range a.remotes.Clusters {
			if r.HealthCheckIP.IsValid() {
				targets[r.ClusterID] = r.HealthCheckIP
			}
		}
		a.prober.SetTargets(targets)
	}
	a.writeStatus(ctx)
}

// withdrawStale deletes, at the broker, endpoints of this cluster that
// former active gateways left.
func (a *active) withdrawStale(st *client.State) {
	for _, ep := range st.Endpoints {
		if ep.GetClusterId() != a.o.ClusterID || ep.GetGateway() == a.o.NodeName {
			continue
		}
		if !a.withdrawn[ep.GetGateway()] {
			a.log.Info("withdrawing a former active gateway's endpoint", "gateway", ep.GetGateway())
		}
		a.withdrawn[ep.GetGateway()] = true
		a.member.WithdrawEndpoint(ep.GetGateway())
	}
}

func (a *active) logRejections() {
	now := map[string]string{}
	for _, r := range a.remotes.Rejected {
		now[r.Record] = r.Reason
		if a.rejections[r.Record] != r.Reason {
			a.log.Warn("remote record rejected; not peering with it", "record", r.Record, "cluster", r.ClusterID, "reason", r.Reason)
		}
	}
	for rec := range a.rejections {
		if _, ok := now[rec]; !ok {
			a.log.Info("remote record no longer rejected", "record", rec)
		}
	}
	a.rejections = now
}

// applyDevice configures the device with the key, the port and the peers,
// when they differ from what was last applied.
func (a *active) applyDevice(ctx context.Context) {
	peers := a.remotes.Peers()
	if a.applied != nil && a.deviceErr == nil && samePeers(a.applied, peers) {
		return
	}
	plan, err := a.dev.Apply(ctx, wireguard.Config{PrivateKey: a.key, ListenPort: a.o.Device.ListenPort, Peers: peers})
	now := a.o.Clock.Now()
	if err != nil {
		a.deviceErr = err
		a.applied = nil
		a.log.Error("configuring the wireguard device failed", "err", err)
		meta.SetStatusCondition(&a.conds, metav1.Condition{Type: ConditionDeviceConfigured, Status: metav1.ConditionFalse,
			Reason: "ApplyFailed", Message: truncate(err.Error(), 1024), LastTransitionTime: a.now()})
		return
	}
	a.deviceErr = nil
	a.applied = slices.Clone(peers)
	if peers == nil {
		a.applied = []wireguard.Peer{}
	}
	if !plan.Empty() {
		a.log.Info("wireguard peers changed", "plan", plan.String())
	}
	meta.SetStatusCondition(&a.conds, metav1.Condition{Type: ConditionDeviceConfigured, Status: metav1.ConditionTrue,
		Reason: "Configured", Message: fmt.Sprintf("%d peer(s)", len(peers)), LastTransitionTime: a.now()})
	next := map[string]peerSince{}
	for _, r := range a.remotes.Clusters {
		s, ok := a.since[r.ClusterID]
		if !ok || s.key != r.Peer.PublicKey || s.endpoint != r.Peer.Endpoint {
			s = peerSince{key: r.Peer.PublicKey, endpoint: r.Peer.Endpoint, at: now}
		}
		next[r.ClusterID] = s
	}
	a.since = next
}

func samePeers(a, b []wireguard.Peer) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// writeStatus writes the Gateway status and, once the broker state is
// known, the RemoteClusters. Unchanged objects are not written.
func (a *active) writeStatus(ctx context.Context) {
	now := a.o.Clock.Now()
	var devState wireguard.State
	var stateErr error
	if a.dev != nil {
		devState, stateErr = a.dev.State(ctx)
		if stateErr != nil && ctx.Err() == nil {
			a.log.Warn("reading the wireguard device state failed", "err", stateErr)
		}
	}
	times := ConnectionTimes{HandshakeFresh: HandshakeFresh, ProbeFresh: 3 * a.o.Probe.Interval, ConnectTimeout: a.o.ConnectTimeout}
	var conns []weftv1.Connection
	var rcs []weftv1.RemoteCluster
	for _, r := range a.remotes.Clusters {
		in := ConnectionInput{Remote: r, ConfiguredAt: a.since[r.ClusterID].at}
		if stateErr == nil {
			in.Peer, in.HavePeer = devState.Peer(r.Peer.PublicKey)
		}
		if a.prober != nil {
			in.Probe, in.Probed = a.prober.Stats(r.ClusterID)
		}
		if in.ConfiguredAt.IsZero() {
			in.ConfiguredAt = now
		}
		c := ComputeConnection(in, now, times)
		conns = append(conns, c)
		rcs = append(rcs, RemoteClusterObject(a.o.Namespace, r, c))
	}
	meta.SetStatusCondition(&a.conds, withTime(rejectionCondition(a.remotes.Rejected), a.now()))
	switch {
	case a.endpointErr != nil:
		meta.SetStatusCondition(&a.conds, metav1.Condition{Type: ConditionEndpointPublished, Status: metav1.ConditionFalse,
			Reason: "InvalidEndpoint", Message: truncate(a.endpointErr.Error(), 1024), LastTransitionTime: a.now()})
	case a.member == nil:
		meta.SetStatusCondition(&a.conds, metav1.Condition{Type: ConditionEndpointPublished, Status: metav1.ConditionFalse,
			Reason: "NotJoined", Message: "no broker credentials yet", LastTransitionTime: a.now()})
	default:
		st := a.member.State()
		if cur, ok := st.Endpoints[a.o.ClusterID+"/"+a.o.NodeName]; ok && proto.Equal(cur, a.endpoint) {
			meta.SetStatusCondition(&a.conds, metav1.Condition{Type: ConditionEndpointPublished, Status: metav1.ConditionTrue,
				Reason: "Published", Message: "the broker holds this gateway's endpoint", LastTransitionTime: a.now()})
		} else {
			meta.SetStatusCondition(&a.conds, metav1.Condition{Type: ConditionEndpointPublished, Status: metav1.ConditionFalse,
				Reason: "Pending", Message: "the broker does not hold this gateway's endpoint yet", LastTransitionTime: a.now()})
		}
	}
	gs := weftv1.GatewayStatus{
		HAStatus:        weftv1.HAActive,
		LocalEndpoint:   endpointSpec(a.endpoint),
		Connections:     conns,
		BrokerConnected: a.member != nil && a.member.Connected(),
		Conditions:      slices.Clone(a.conds),
	}
	if a.endpoint == nil {
		gs.LocalEndpoint = weftv1.EndpointSpec{Gateway: a.o.NodeName, PrivateIP: addrText(a.node.InternalIP)}
	}
	if err := a.g.writeActive(ctx, gs); err != nil && ctx.Err() == nil {
		a.log.Warn("writing the gateway status failed", "err", err)
	}
	if !a.synced {
		return // RemoteClusters are left alone until the broker state is known
	}
	if err := a.g.obj.syncRemoteClusters(ctx, rcs); err != nil && ctx.Err() == nil {
		a.log.Warn("writing RemoteClusters failed", "err", err)
	}
}

func withTime(c metav1.Condition, t metav1.Time) metav1.Condition {
	c.LastTransitionTime = t
	return c
}
