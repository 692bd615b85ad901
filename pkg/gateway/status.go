package gateway

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/wireguard"
)

// ConnectionInput is what the status of one tunnel is computed from.
type ConnectionInput struct {
	Remote Remote
	// Peer is the device's view of the peer; HavePeer is false when the
	// device does not have it (not configured yet, or the device failed).
	Peer     wireguard.PeerState
	HavePeer bool
	// Probe holds the health probe statistics; Probed is false when the
	// remote is not probed (no health-check address, or none of the
	// source's family, or no local source address).
	Probe  RTTStats
	Probed bool
	// ConfiguredAt is when the peer was first configured with its current
	// key and endpoint.
	ConfiguredAt time.Time
}

// ConnectionTimes are the thresholds of [ComputeConnection].
type ConnectionTimes struct {
	// HandshakeFresh: a handshake older than this does not count (3 min).
	HandshakeFresh time.Duration
	// ProbeFresh: the last probe answer must be this recent (3 probe
	// intervals).
	ProbeFresh time.Duration
	// ConnectTimeout: after this long without a fresh handshake the status
	// is error rather than connecting.
	ConnectTimeout time.Duration
}

// ComputeConnection derives the Gateway's view of one tunnel:
//
//   - connected: a handshake within HandshakeFresh and, when the remote is
//     probed, a probe answered within ProbeFresh;
//   - connecting: the peer is configured and waiting for its first
//     handshake (or for probe answers) for less than ConnectTimeout, or has
//     a fresh handshake but unanswered probes;
//   - error: the device lacks the peer, or there has been no fresh
//     handshake for ConnectTimeout.
//
// It is pure: now is passed in.
func ComputeConnection(in ConnectionInput, now time.Time, t ConnectionTimes) weftv1.Connection {
	r := in.Remote
	c := weftv1.Connection{
		ClusterID: r.ClusterID,
		Endpoint:  endpointSpec(r.Endpoint),
		UsingIP:   r.Peer.Endpoint.Addr().String(),
	}
	if !in.HavePeer {
		c.Status = weftv1.Error
		c.Message = "the WireGuard device has no peer for this cluster"
		return c
	}
	if in.Peer.Endpoint.IsValid() {
		c.UsingIP = in.Peer.Endpoint.Addr().String()
	}
	c.RxBytes, c.TxBytes = in.Peer.RxBytes, in.Peer.TxBytes
	hs := in.Peer.LastHandshake
	if !hs.IsZero() {
		c.LastHandshake = ptrTime(hs)
	}
	if in.Probed && in.Probe.Sent > 0 {
		c.RTT = rttStatus(in.Probe)
	}
	fresh := !hs.IsZero() && now.Sub(hs) <= t.HandshakeFresh
	answered := !in.Probed || (!in.Probe.LastReply.IsZero() && now.Sub(in.Probe.LastReply) <= t.ProbeFresh)
	switch {
	case fresh && answered:
		c.Status = weftv1.Connected
	case fresh:
		c.Status = weftv1.Connecting
		c.Message = fmt.Sprintf("handshake done; health probes to %s unanswered", r.HealthCheckIP)
	case hs.IsZero() && now.Sub(in.ConfiguredAt) < t.ConnectTimeout:
		c.Status = weftv1.Connecting
		c.Message = "waiting for the first handshake"
	case !hs.IsZero() && now.Sub(hs) < t.HandshakeFresh+t.ConnectTimeout:
		c.Status = weftv1.Connecting
		c.Message = fmt.Sprintf("last handshake %s ago; re-establishing", now.Sub(hs).Round(time.Second))
	case hs.IsZero():
		c.Status = weftv1.Error
		c.Message = fmt.Sprintf("no handshake in %s since the peer was configured (is UDP %s reachable?)",
			now.Sub(in.ConfiguredAt).Round(time.Second), r.Peer.Endpoint)
	default:
		c.Status = weftv1.Error
		c.Message = fmt.Sprintf("no handshake for %s (is UDP %s reachable?)", now.Sub(hs).Round(time.Second), r.Peer.Endpoint)
	}
	return c
}

func rttStatus(s RTTStats) *weftv1.RTT {
	return &weftv1.RTT{
		LastMicros: s.Last.Microseconds(), MinMicros: s.Min.Microseconds(), AvgMicros: s.Avg.Microseconds(),
		MaxMicros: s.Max.Microseconds(), StdDevMicros: s.StdDev.Microseconds(), LossPercent: int32(s.LossPercent),
	}
}

// ptrTime is t as a metav1.Time at the precision the API keeps (seconds),
// so that what was written compares equal to what is computed next.
func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.Truncate(time.Second).UTC())
	return &mt
}

// RemoteClusterObject is the desired RemoteCluster of a remote (name =
// cluster id), with the status of its connection.
func RemoteClusterObject(namespace string, r Remote, conn weftv1.Connection) weftv1.RemoteCluster {
	subnets := make([]string, len(r.Subnets))
	for i, p := range r.Subnets {
		subnets[i] = p.String()
	}
	return weftv1.RemoteCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: weftv1.GroupVersion.String(), Kind: "RemoteCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: r.ClusterID, Namespace: namespace, Labels: managedLabels()},
		Spec: weftv1.RemoteClusterSpec{
			ClusterID: r.ClusterID, Subnets: subnets, GlobalCIDR: r.GlobalCIDR, Endpoint: endpointSpec(r.Endpoint),
		},
		Status: weftv1.RemoteClusterStatus{
			Connection: conn.Status, UsingIP: conn.UsingIP, LastHandshake: conn.LastHandshake,
			RTT: conn.RTT, Message: conn.Message,
		},
	}
}

func managedLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": "weft-gateway", "app.kubernetes.io/part-of": "weft"}
}

// rejectionCondition is the RemoteRecordsValid condition for a set of
// rejections.
func rejectionCondition(rej []Rejection) metav1.Condition {
	if len(rej) == 0 {
		return metav1.Condition{Type: ConditionRemoteRecordsValid, Status: metav1.ConditionTrue, Reason: "AllValid",
			Message: "every remote record passed validation"}
	}
	parts := make([]string, 0, len(rej))
	for _, r := range rej {
		parts = append(parts, r.String())
	}
	msg := fmt.Sprintf("%d remote record(s) skipped: %s", len(rej), strings.Join(parts, "; "))
	if len(msg) > 1024 {
		msg = msg[:1021] + "..."
	}
	return metav1.Condition{Type: ConditionRemoteRecordsValid, Status: metav1.ConditionFalse, Reason: "RecordsRejected", Message: msg}
}
