package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/weftnet/weft/pkg/broker/validate"
	"github.com/weftnet/weft/pkg/cidr"
	"github.com/weftnet/weft/pkg/wireguard"
)

// Names shared with the rest of weft (route agent, weftctl, the lab).
const (
	// DefaultNamespace holds the Lease, the Secrets and the weft.io objects.
	DefaultNamespace = "weft-system"
	// LeaseName is the leader election Lease; its holder is the active
	// gateway node.
	LeaseName = "weft-gateway"
	// KeySecretName holds the cluster's WireGuard private key under
	// KeySecretKey.
	KeySecretName = "weft-gateway-key"
	KeySecretKey  = "privateKey"
	// TokenSecretName holds the broker join token under TokenSecretKey.
	TokenSecretName = "weft-broker-token"
	TokenSecretKey  = "token"
	// CredentialsSecretName holds the broker credentials (client.Credentials
	// JSON) under CredentialsSecretKey.
	CredentialsSecretName = "weft-broker-credentials"
	CredentialsSecretKey  = "credentials.json"
	// PublicIPAnnotation on a Node overrides its ExternalIP as the public
	// address of the gateway.
	PublicIPAnnotation = "weft.io/public-ip"
	// DefaultListenPort is the WireGuard UDP port.
	DefaultListenPort = 51820
	// DefaultDeviceName is the WireGuard interface.
	DefaultDeviceName = "weft-wg"
	// MTUOverhead is subtracted from the underlay MTU for the tunnel
	// (IPv6 outer header 40 + UDP 8 + WireGuard 32).
	MTUOverhead = 80
	// DefaultKeepalive is the persistent keepalive of every peer.
	DefaultKeepalive = 25 * time.Second
	// HandshakeFresh is how old the last handshake may be for a connection
	// to count as connected (WireGuard rekeys every 2 minutes while traffic
	// flows, and keepalives keep traffic flowing).
	HandshakeFresh = 3 * time.Minute
)

// Condition types of the Gateway status.
const (
	// ConditionLeader: True on the active gateway.
	ConditionLeader = "Leader"
	// ConditionRemoteRecordsValid: False when some remote record from the
	// broker failed validation and was skipped.
	ConditionRemoteRecordsValid = "RemoteRecordsValid"
	// ConditionDeviceConfigured: False when the WireGuard device could not
	// be configured.
	ConditionDeviceConfigured = "DeviceConfigured"
	// ConditionEndpointPublished: True once the broker holds this gateway's
	// endpoint as published.
	ConditionEndpointPublished = "EndpointPublished"
)

// ErrLostLeadership is returned by [Gateway.Run] when the active gateway
// lost its Lease: the device is closed, and the caller should exit (non-zero)
// so that the process restarts as a passive gateway.
var ErrLostLeadership = errors.New("gateway: lost the leader lease")

// Options configure a [Gateway].
type Options struct {
	// RESTConfig reaches the cluster's API server; required.
	RESTConfig *rest.Config
	// Namespace of the Lease, the Secrets and the weft.io objects (default
	// weft-system).
	Namespace string
	// NodeName is this node; it is the leader election identity, the
	// Gateway object's name and the endpoint's gateway name. Required.
	NodeName string
	// ClusterID is this cluster's id at the broker (DNS-1123 label).
	// Required.
	ClusterID string
	// PodCIDRs and ServiceCIDRs of this cluster; at least one pod CIDR.
	PodCIDRs, ServiceCIDRs []netip.Prefix
	// PublicIP, when valid, is published instead of the node's annotation
	// weft.io/public-ip or ExternalIP.
	PublicIP netip.Addr
	// HealthCheckIP, when valid, overrides the node's pod-network address
	// (first host address of spec.podCIDR): published as the endpoint's
	// health_check_ip and used as the source of health probes.
	HealthCheckIP netip.Addr

	Device         DeviceOptions
	LeaderElection LeaderElectionOptions
	Probe          ProbeOptions

	// StatusInterval bounds how often statuses are written (default 3 s);
	// they are written only when they changed.
	StatusInterval time.Duration
	// NodeResync is how often the node is read again, to republish a
	// changed address (default 30 s).
	NodeResync time.Duration
	// Keepalive of every peer (default 25 s).
	Keepalive time.Duration
	// ConnectTimeout is how long a peer may stay without handshake before
	// its connection is reported as error rather than connecting (default 3
	// min).
	ConnectTimeout time.Duration

	// Clock; nil means the real clock.
	Clock clock.WithTicker
	// Logger; nil discards.
	Logger *slog.Logger
}

// DeviceOptions configure the WireGuard device of the active gateway.
type DeviceOptions struct {
	// Name of the interface (default weft-wg); at most 15 bytes.
	Name string
	// Backend: auto (default), kernel or userspace.
	Backend wireguard.Backend
	// ListenPort is the UDP port, also published (default 51820).
	ListenPort int
	// MTU, when > 0, overrides the derived MTU (underlay MTU minus 80).
	MTU int
	// NetNS, when set, is the path of the network namespace for the device,
	// the underlay MTU lookup and the health probes (tests run gateways
	// in-process this way); empty means this process's namespace.
	NetNS string
}

// LeaderElectionOptions are the Lease timings (defaults 4 s, 3 s, 1 s).
type LeaderElectionOptions struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// ProbeOptions configure the health prober.
type ProbeOptions struct {
	// Interval between probes of one target (default 1 s); a probe
	// unanswered after one interval is lost.
	Interval time.Duration
	// Window is how many recent probes the statistics cover (default 60).
	Window int
	// Unprivileged uses unprivileged ICMP sockets (UDP, needs
	// net.ipv4.ping_group_range) instead of raw ones.
	Unprivileged bool
}

func (o *Options) defaults() error {
	var errs []error
	if o.RESTConfig == nil {
		errs = append(errs, errors.New("rest config: unset"))
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.NodeName == "" {
		errs = append(errs, errors.New("node name: unset"))
	}
	if o.ClusterID == "" {
		errs = append(errs, errors.New("cluster id: unset"))
	}
	if len(o.PodCIDRs) == 0 {
		errs = append(errs, errors.New("pod cidrs: unset"))
	}
	for _, p := range append(append([]netip.Prefix(nil), o.PodCIDRs...), o.ServiceCIDRs...) {
		if err := cidr.CheckPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("cidr %s: %w", p, err))
		}
	}
	if len(errs) == 0 {
		// The broker checks the same; failing here names the flag early.
		if err := validate.ClusterInfo(clusterInfo(o), nil); err != nil {
			errs = append(errs, fmt.Errorf("cluster info: %w", err))
		}
	}
	if o.Device.Name == "" {
		o.Device.Name = DefaultDeviceName
	}
	if len(o.Device.Name) > 15 {
		errs = append(errs, fmt.Errorf("device name %q: longer than 15 bytes", o.Device.Name))
	}
	if o.Device.Backend == "" {
		o.Device.Backend = wireguard.BackendAuto
	}
	if _, err := wireguard.ParseBackend(string(o.Device.Backend)); err != nil {
		errs = append(errs, err)
	}
	if o.Device.ListenPort == 0 {
		o.Device.ListenPort = DefaultListenPort
	}
	if o.Device.ListenPort < 1 || o.Device.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d: want 1-65535", o.Device.ListenPort))
	}
	if o.Device.MTU != 0 && (o.Device.MTU < 576 || o.Device.MTU > 65535) {
		errs = append(errs, fmt.Errorf("mtu %d: want 576-65535", o.Device.MTU))
	}
	le := &o.LeaderElection
	def(&le.LeaseDuration, 4*time.Second)
	def(&le.RenewDeadline, 3*time.Second)
	def(&le.RetryPeriod, time.Second)
	if le.RenewDeadline >= le.LeaseDuration {
		errs = append(errs, fmt.Errorf("renew deadline %s: must be shorter than the lease duration %s", le.RenewDeadline, le.LeaseDuration))
	}
	if float64(le.RenewDeadline) <= 1.2*float64(le.RetryPeriod) {
		errs = append(errs, fmt.Errorf("renew deadline %s: must exceed 1.2 × the retry period %s", le.RenewDeadline, le.RetryPeriod))
	}
	def(&o.Probe.Interval, time.Second)
	if o.Probe.Window <= 0 {
		o.Probe.Window = 60
	}
	def(&o.StatusInterval, 3*time.Second)
	def(&o.NodeResync, 30*time.Second)
	def(&o.Keepalive, DefaultKeepalive)
	def(&o.ConnectTimeout, HandshakeFresh)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gateway: options: %w", err)
	}
	return nil
}

func def(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// localCIDRs are the cluster's pod and service CIDRs: the subnets the
// endpoint publishes.
func (o *Options) localCIDRs() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(o.PodCIDRs)+len(o.ServiceCIDRs))
	for _, p := range o.PodCIDRs {
		out = append(out, p.Masked())
	}
	for _, p := range o.ServiceCIDRs {
		out = append(out, p.Masked())
	}
	return out
}
