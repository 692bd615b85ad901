package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/etcdtest"
	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/broker/store"
	"github.com/weftnet/weft/pkg/broker/token"
)

// replica is one in-process broker serving on loopback over the shared
// external etcd cluster, with its own etcd client.
type replica struct {
	name string
	addr string
	srv  *broker.Server
}

// startReplicas starts n brokers at once over the etcd cluster, so that
// they race to create the CA.
func startReplicas(t *testing.T, ctx context.Context, endpoints []string, n int) []*replica {
	t.Helper()
	type result struct {
		r   *replica
		err error
	}
	results := make(chan result, n)
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{name: string(rune('A' + i)), addr: lis.Addr().String()}
		go func() {
			cli, err := store.Connect(ctx, store.ConnectOptions{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				lis.Close()
				results <- result{err: fmt.Errorf("replica %s: %w", r.name, err)}
				return
			}
			t.Cleanup(func() { cli.Close() })
			r.srv, err = broker.New(ctx, broker.Options{
				Store: store.New(cli, ""), Addresses: []string{r.addr}, JoinRate: 1000, JoinBurst: 1000,
			})
			if err != nil {
				lis.Close()
				results <- result{err: fmt.Errorf("replica %s: %w", r.name, err)}
				return
			}
			g, err := r.srv.GRPCServer()
			if err != nil {
				lis.Close()
				results <- result{err: fmt.Errorf("replica %s: %w", r.name, err)}
				return
			}
			t.Cleanup(g.Stop)
			go g.Serve(lis)
			results <- result{r: r}
		}()
	}
	out := make([]*replica, n)
	for range n {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		out[res.r.name[0]-'A'] = res.r
	}
	return out
}

// admin issues admin credentials from r's CA and returns an admin client
// dialling r.
func (r *replica) admin(t *testing.T) v1.AdminServiceClient {
	t.Helper()
	keyPEM, csrPEM, err := ca.NewKeyAndCSR("admin")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := r.srv.IssueAdmin(csrPEM, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	creds := &client.Credentials{ClusterID: "admin", Addresses: []string{r.addr}, CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: r.srv.CA().CertPEM()}
	return v1.NewAdminServiceClient(dial(t, creds, r.addr))
}

func dial(t *testing.T, creds *client.Credentials, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := client.Dial(creds, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// joinVia joins a cluster through replica `via` with a token created
// through replica `issuer` (the token's address list is narrowed to `via`).
func joinVia(t *testing.T, ctx context.Context, issuer v1.AdminServiceClient, via *replica, id, pod, svc string) *client.Credentials {
	t.Helper()
	resp, err := issuer.CreateToken(ctx, &v1.CreateTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.Parse(resp.Token)
	if err != nil {
		t.Fatal(err)
	}
	tok.Addresses = []string{via.addr}
	s, err := tok.Encode()
	if err != nil {
		t.Fatal(err)
	}
	creds, _, err := client.Join(ctx, client.JoinOptions{Token: s, Cluster: &v1.ClusterInfo{Id: id, PodCidrs: []string{pod}, ServiceCidrs: []string{svc}}})
	if err != nil {
		t.Fatalf("join %s via replica %s: %v", id, via.name, err)
	}
	return creds
}

// followEndpoints watches through conn and sends the gateway of every
// endpoint PUT after the snapshot, resuming after a failed stream as a
// member does (from the last revision seen complete). It returns when the
// first snapshot has been read.
func followEndpoints(t *testing.T, ctx context.Context, cli v1.MemberServiceClient) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	stream, err := cli.Watch(ctx, &v1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var from int64
	for from == 0 {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == v1.EventType_EVENT_TYPE_SNAPSHOT_END {
			from = ev.Revision
		}
	}
	out := make(chan string, 100)
	go func() {
		defer close(done)
		var last int64 // revision of the last event; complete once a later one arrives
		for ctx.Err() == nil {
			for {
				ev, err := stream.Recv()
				if err != nil {
					if ctx.Err() == nil {
						t.Logf("watch on replica B ended (%v); resuming after revision %d", err, from)
					}
					break
				}
				if ev.Revision > last {
					if last > from {
						from = last
					}
					last = ev.Revision
				}
				if ev.Type == v1.EventType_EVENT_TYPE_PUT && ev.GetEndpoint() != nil {
					select {
					case out <- ev.GetEndpoint().Gateway:
					case <-ctx.Done():
						return
					}
				}
			}
			for ctx.Err() == nil {
				if stream, err = cli.Watch(ctx, &v1.WatchRequest{FromRevision: from}); err == nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}()
	return out
}

func waitGateway(t *testing.T, ch <-chan string, want string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case gw := <-ch:
			if gw == want {
				return
			}
		case <-deadline:
			t.Fatalf("watch on replica B did not deliver endpoint %s within %v", want, within)
		}
	}
}

// TestReplicasOverExternalEtcdSurviveLeaderLoss runs two broker replicas
// over one three-member etcd cluster: they share one CA and all records,
// and both keep serving reads, writes and watches after the etcd leader is
// killed.
func TestReplicasOverExternalEtcdSurviveLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("integration tier (etcd processes): skipped with -short")
	}
	ec := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	rs := startReplicas(t, ctx, ec.Endpoints(), 2)
	a, b := rs[0], rs[1]
	// One CA, created by whichever replica won the race.
	if a.srv.Pin() != b.srv.Pin() || string(a.srv.CA().CertPEM()) != string(b.srv.CA().CertPEM()) {
		t.Fatalf("replicas have different CAs: pins %s and %s", a.srv.Pin(), b.srv.Pin())
	}
	adminA, adminB := a.admin(t), b.admin(t)

	// Tokens and joins work across replicas.
	c1creds := joinVia(t, ctx, adminB, a, "c1", "10.1.0.0/16", "10.101.0.0/16")
	c2creds := joinVia(t, ctx, adminA, b, "c2", "10.2.0.0/16", "10.102.0.0/16")
	c1 := v1.NewMemberServiceClient(dial(t, c1creds, a.addr)) // c1 talks to A
	c2 := v1.NewMemberServiceClient(dial(t, c2creds, b.addr)) // c2 talks to B

	gateways := followEndpoints(t, ctx, c2)
	if _, err := c1.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint("c1", "before", "10.1.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	waitGateway(t, gateways, "before", 10*time.Second)

	leader, err := ec.KillLeader()
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Logf("killed etcd leader %s (%s)", leader.Name, leader.ClientURL)

	// Writes through both replicas; PutEndpoint is idempotent, so a retry
	// after an ambiguous failure is safe.
	put := func(who string, cli v1.MemberServiceClient, ep *v1.Endpoint) {
		t.Helper()
		failures := etcdtest.Retry(t, "PutEndpoint "+ep.Gateway+" via "+who, 20*time.Second, func(ctx context.Context) error {
			_, err := cli.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: ep})
			return err
		})
		t.Logf("PutEndpoint %s via replica %s: done %v after the kill, %d failed attempts",
			ep.Gateway, who, time.Since(killedAt).Round(time.Millisecond), failures)
	}
	put("A", c1, endpoint("c1", "after-a", "10.1.0.0/16"))
	put("B", c2, endpoint("c2", "after-b", "10.2.0.0/16"))

	// Reads through both replicas see everything.
	for _, r := range []struct {
		name  string
		admin v1.AdminServiceClient
	}{{"A", adminA}, {"B", adminB}} {
		etcdtest.Retry(t, "ListClusters via "+r.name, 20*time.Second, func(ctx context.Context) error {
			resp, err := r.admin.ListClusters(ctx, &v1.ListClustersRequest{})
			if err != nil {
				return err
			}
			if len(resp.Clusters) != 2 || resp.Endpoints["c1"] != 2 || resp.Endpoints["c2"] != 1 {
				return fmt.Errorf("%d clusters, endpoints %v; want 2 clusters, c1:2 c2:1", len(resp.Clusters), resp.Endpoints)
			}
			return nil
		})
	}

	// The watch on B delivers what was written through A after the kill.
	waitGateway(t, gateways, "after-a", 15*time.Second)
	t.Logf("watch on B delivered after-a %v after the kill", time.Since(killedAt).Round(time.Millisecond))
}
