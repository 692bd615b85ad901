package broker_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/client"
)

// runMember runs a client.Member with fast reconnects until the test ends.
func runMember(t *testing.T, creds *client.Credentials, mod func(*client.MemberOptions)) *client.Member {
	t.Helper()
	o := client.MemberOptions{Credentials: creds, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	m, err := client.NewMember(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			t.Errorf("member %s: Run: %v", creds.ClusterID, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

// waitMember waits, on the member's Changed signal, until cond holds.
func waitMember(t *testing.T, m *client.Member, what string, within time.Duration, cond func(*client.Member) bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for !cond(m) {
		select {
		case <-m.Changed():
		case <-deadline.C:
			s := m.State()
			t.Fatalf("%s: not within %v (connected=%v, revision %d, %d clusters, %d endpoints, %d exports, rejected %v)",
				what, within, m.Connected(), s.Revision, len(s.Clusters), len(s.Endpoints), len(s.Exports), s.Rejected)
		}
	}
}

func connected(m *client.Member) bool    { return m.Connected() }
func disconnected(m *client.Member) bool { return !m.Connected() }

func serviceExport(cluster, name, ip string) *v1.ServiceExport {
	return &v1.ServiceExport{
		ClusterId: cluster, Namespace: "default", Name: name, Type: v1.ServiceType_SERVICE_TYPE_CLUSTER_SET_IP,
		Ports:   []*v1.ServicePort{{Name: "http", Protocol: v1.Protocol_PROTOCOL_TCP, Port: 80}},
		Ips:     []string{ip},
		Created: timestamppb.Now(),
	}
}

// TestMemberCacheSurvivesBrokerOutage runs two members: what one publishes
// reaches the other; while the broker is down the other keeps its cache
// and reports itself disconnected; after the broker restarts (same data,
// same CA) both reconnect on their own and changes flow again.
func TestMemberCacheSurvivesBrokerOutage(t *testing.T) {
	e := newEnv(t, nil)
	c1creds, _ := e.join("c1", "10.1.0.0/16", "10.101.0.0/16", false)
	c2creds, _ := e.join("c2", "10.2.0.0/16", "10.102.0.0/16", false)
	m1 := runMember(t, c1creds, nil)
	m2 := runMember(t, c2creds, nil)

	ep := endpoint("c1", "c1-gw", "10.1.0.0/16", "10.101.0.0/16")
	m1.PublishEndpoint(ep)
	hasEndpoint := func(m *client.Member) bool {
		got, ok := m.State().Endpoints["c1/c1-gw"]
		return ok && got.PublicIp == ep.PublicIp
	}
	waitMember(t, m2, "c2 sees c1's endpoint", 10*time.Second, hasEndpoint)
	waitMember(t, m1, "c1 connected", 10*time.Second, connected)
	waitMember(t, m2, "c2 connected", 10*time.Second, connected)

	// Broker down: the cache stays, the connection state says so.
	e.stop()
	waitMember(t, m2, "c2 notices the broker is gone", 10*time.Second, disconnected)
	waitMember(t, m1, "c1 notices the broker is gone", 10*time.Second, disconnected)
	if !hasEndpoint(m2) {
		t.Fatalf("c2 lost c1's endpoint while the broker was down: %v", m2.State().Endpoints)
	}
	if s := m2.State(); len(s.Clusters) != 2 {
		t.Fatalf("c2 lost cluster records while the broker was down: %v", s.Clusters)
	}

	// Broker back: both reconnect by themselves, and changes flow again.
	e.restart()
	waitMember(t, m1, "c1 reconnects", 10*time.Second, connected)
	waitMember(t, m2, "c2 reconnects", 10*time.Second, connected)
	m1.PublishExport(serviceExport("c1", "web", "10.101.0.10"))
	waitMember(t, m2, "c2 sees c1's export", 10*time.Second, func(m *client.Member) bool {
		_, ok := m.State().Exports["c1/default/web"]
		return ok
	})
	if s := m2.State(); !hasEndpoint(m2) || len(s.Rejected) != 0 {
		t.Fatalf("after reconnect: endpoints %v, rejected %v", s.Endpoints, s.Rejected)
	}
}

// TestMemberRenewsCertificate moves the broker's (and member's) clock past
// two thirds of the client certificate's validity: the member renews with
// a new key, reports the new credentials, and they authenticate.
func TestMemberRenewsCertificate(t *testing.T) {
	// The harness clock starts 3 h behind real time and the server checks
	// certificates against real time, so: a validity over 3 h (the first
	// certificate must still be valid now), and renewal due after at most
	// 3 h of fake time (fake time stays behind real time). 4 h: due after
	// 2 h 40 min.
	const validity = 4 * time.Hour
	e := newEnv(t, func(o *broker.Options) {
		o.ClientCertValidity = validity
		o.HeartbeatInterval = 50 * time.Millisecond
	})
	creds, _ := e.join("c1", "10.1.0.0/16", "10.101.0.0/16", false)
	oldCert, err := ca.ParseCertificatePEM(creds.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if due := client.RenewAt(oldCert); !due.After(e.clock.Now().Add(2*time.Hour)) || due.After(time.Now()) {
		t.Fatalf("test setup: renewal due at %v; want between fake now + 2 h (%v) and real now", due, e.clock.Now().Add(2*time.Hour))
	}
	renewed := make(chan *client.Credentials, 10)
	m := runMember(t, creds, func(o *client.MemberOptions) {
		o.Now = e.clock.Now
		o.OnRenew = func(c *client.Credentials) { renewed <- c }
	})
	waitMember(t, m, "connected", 10*time.Second, connected)
	select {
	case c := <-renewed:
		t.Fatalf("renewed a fresh certificate (expiry %v)", mustExpiry(t, c))
	default:
	}

	e.clock.Add(2*time.Hour + 50*time.Minute) // past two thirds, still behind real time
	var next *client.Credentials
	select {
	case next = <-renewed:
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal within 10s of the certificate becoming due")
	}
	newCert, err := ca.ParseCertificatePEM(next.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !newCert.NotAfter.After(oldCert.NotAfter) {
		t.Fatalf("renewed certificate expires %v, not after the old %v", newCert.NotAfter, oldCert.NotAfter)
	}
	if id, err := ca.IdentityOf(newCert); err != nil || id != (ca.Identity{Kind: ca.KindCluster, Name: "c1"}) {
		t.Fatalf("renewed certificate identity %v (%v)", id, err)
	}
	if string(next.KeyPEM) == string(creds.KeyPEM) {
		t.Fatal("renewal kept the old key")
	}
	if next.ClusterID != creds.ClusterID || len(next.Addresses) != 1 || string(next.CAPEM) != string(creds.CAPEM) {
		t.Fatalf("renewed credentials changed more than key and certificate: %+v", next)
	}
	if cur := m.Credentials(); string(cur.CertPEM) != string(next.CertPEM) {
		t.Fatal("member does not use the renewed credentials")
	}
	// The new credentials authenticate (also after the round trip through
	// storage a gateway makes).
	raw, err := next.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := client.UnmarshalCredentials(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.member(stored).Heartbeat(context.Background(), &v1.HeartbeatRequest{}); err != nil {
		t.Fatalf("heartbeat with the renewed certificate: %v", err)
	}
	// Not due again: no second renewal on the next heartbeats.
	select {
	case c := <-renewed:
		t.Fatalf("renewed again at once (expiry %v)", mustExpiry(t, c))
	case <-time.After(300 * time.Millisecond):
	}
	// And the member reconnects with them after a broker restart.
	e.restart()
	waitMember(t, m, "reconnected after restart", 10*time.Second, connected)
}

func mustExpiry(t *testing.T, c *client.Credentials) time.Time {
	t.Helper()
	exp, err := c.Expiry()
	if err != nil {
		t.Fatal(err)
	}
	return exp
}
