package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/broker/store"
	"github.com/weftnet/weft/pkg/broker/token"
)

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("err = %v, want %s containing %q", err, code, substr)
	}
}

func TestJoinAndOwnershipRules(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	_, c1 := e.join("c1", "10.1.0.0/16", "10.101.0.0/16", false)
	_, c2 := e.join("c2", "10.2.0.0/16", "10.102.0.0/16", false)

	if _, err := c1.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint("c1", "c1-n1", "10.1.0.0/16", "10.101.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	// A cannot write or delete B's records.
	_, err := c1.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint("c2", "c2-n1", "10.2.0.0/16")})
	wantCode(t, err, codes.PermissionDenied, `cluster "c1" may not write records of cluster "c2"`)
	_, err = c1.DeleteEndpoint(ctx, &v1.DeleteEndpointRequest{ClusterId: "c2", Gateway: "c2-n1"})
	wantCode(t, err, codes.PermissionDenied, "may not write")
	_, err = c1.DeleteCluster(ctx, &v1.DeleteClusterRequest{ClusterId: "c2"})
	wantCode(t, err, codes.PermissionDenied, "may not write")
	_, err = c1.PutCluster(ctx, &v1.PutClusterRequest{Cluster: &v1.ClusterInfo{Id: "c2", PodCidrs: []string{"10.9.0.0/16"}}})
	wantCode(t, err, codes.PermissionDenied, "may not write")
	// A member certificate cannot call admin RPCs.
	creds, _ := e.join("c3", "10.3.0.0/16", "10.103.0.0/16", false)
	conn, _ := client.Dial(creds, "")
	defer conn.Close()
	_, err = v1.NewAdminServiceClient(conn).ListClusters(ctx, &v1.ListClustersRequest{})
	wantCode(t, err, codes.PermissionDenied, "needs a weft:admin certificate")

	// Hostile subnets.
	_, err = c1.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint("c1", "c1-n1", "0.0.0.0/0")})
	wantCode(t, err, codes.InvalidArgument, "endpoint.subnets[0]")
	_, err = c1.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint("c1", "c1-n1", "10.2.0.0/16")})
	wantCode(t, err, codes.InvalidArgument, "endpoint.subnets[0]")
	// A cluster claiming another's CIDRs at join names the other cluster.
	_, _, err = client.Join(ctx, client.JoinOptions{
		Token:   e.token(&v1.CreateTokenRequest{}),
		Cluster: &v1.ClusterInfo{Id: "c9", PodCidrs: []string{"10.2.128.0/17"}, ServiceCidrs: []string{"10.109.0.0/16"}},
	})
	if err == nil || !strings.Contains(err.Error(), "c2") || !strings.Contains(err.Error(), "pod_cidrs[0]") {
		t.Fatalf("overlapping join: %v", err)
	}
	// Oversize input.
	big := endpoint("c1", "c1-n1")
	for i := 0; i < 100; i++ {
		big.Subnets = append(big.Subnets, "10.1.0.0/16")
	}
	_, err = c1.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: big})
	wantCode(t, err, codes.InvalidArgument, "subnets")
	_, err = c1.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: &v1.Endpoint{ClusterId: "c1", Gateway: strings.Repeat("g", 300), PublicKey: make([]byte, 32)}})
	wantCode(t, err, codes.InvalidArgument, "gateway")

	// Nothing of the rejected writes was stored.
	resp, err := e.adminClient().ListClusters(ctx, &v1.ListClustersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Clusters) != 3 || resp.Endpoints["c1"] != 1 || resp.Endpoints["c2"] != 0 {
		t.Fatalf("after rejected writes: %d clusters, endpoints %v", len(resp.Clusters), resp.Endpoints)
	}
	_ = c2
}

func TestTokenFailures(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	adm := e.adminClient()
	join := func(tok, id string) error {
		_, _, err := client.Join(ctx, client.JoinOptions{Token: tok, Cluster: &v1.ClusterInfo{Id: id, PodCidrs: []string{"10.1.0.0/16"}, ServiceCidrs: []string{"10.101.0.0/16"}}})
		return err
	}
	bad := "join token is unknown, expired, revoked or used up"

	expiring := e.token(&v1.CreateTokenRequest{Ttl: durationpb.New(time.Hour)})
	e.clock.Add(2 * time.Hour)
	if err := join(expiring, "c1"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("expired token: %v", err)
	}

	revoked, err := adm.CreateToken(ctx, &v1.CreateTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.RevokeToken(ctx, &v1.RevokeTokenRequest{Id: revoked.Id}); err != nil {
		t.Fatal(err)
	}
	if err := join(revoked.Token, "c1"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("revoked token: %v", err)
	}

	once := e.token(&v1.CreateTokenRequest{Uses: 1})
	if err := join(once, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := join(once, "c2"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("exhausted token: %v", err)
	}

	tok, _ := token.Parse(e.token(&v1.CreateTokenRequest{}))
	tok.Secret[0] ^= 1
	wrong, _ := tok.Encode()
	if err := join(wrong, "c3"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("wrong secret: %v", err)
	}

	if err := join("not-a-token", "c3"); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("malformed token: %v", err)
	}

	bound := e.token(&v1.CreateTokenRequest{ClusterId: "c7"})
	if err := join(bound, "c8"); err == nil || !strings.Contains(err.Error(), `bound to cluster "c7"`) {
		t.Fatalf("token bound to another cluster: %v", err)
	}

	// A broker with another CA (an impersonator) is refused before the
	// secret is sent.
	pinned, _ := token.Parse(e.token(&v1.CreateTokenRequest{}))
	pinned.CAPin[0] ^= 1
	mism, _ := pinned.Encode()
	if err := join(mism, "c3"); err == nil || !strings.Contains(err.Error(), client.ErrPinMismatch.Error()) {
		t.Fatalf("pin mismatch: %v", err)
	}

	list, err := adm.ListTokens(ctx, &v1.ListTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range list.Tokens {
		if strings.Contains(ti.String(), "secret") {
			t.Fatalf("token list shows a secret: %v", ti)
		}
	}
}

func TestGlobalnetAllocationIsUniqueUnderConcurrency(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	tokens := make([]string, 8)
	for i := range tokens {
		tokens[i] = e.token(&v1.CreateTokenRequest{})
	}
	var (
		mu     sync.Mutex
		slices = map[string]string{}
		wg     sync.WaitGroup
	)
	for i := range tokens {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := string(rune('a'+i)) + "x"
			// Overlapping real CIDRs: globalnet makes them acceptable.
			_, resp, err := client.Join(ctx, client.JoinOptions{Token: tokens[i], Cluster: &v1.ClusterInfo{
				Id: id, PodCidrs: []string{"10.0.0.0/16"}, ServiceCidrs: []string{"10.96.0.0/16"}, WantsGlobalnet: true}})
			if err != nil {
				t.Errorf("join %s: %v", id, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := slices[resp.GlobalCidr]; dup {
				t.Errorf("%s and %s both got %s", id, other, resp.GlobalCidr)
			}
			slices[resp.GlobalCidr] = id
		}(i)
	}
	wg.Wait()
	if len(slices) != len(tokens) {
		t.Fatalf("%d distinct slices for %d clusters: %v", len(slices), len(tokens), slices)
	}
	for s := range slices {
		if !strings.HasPrefix(s, "242.") || !strings.HasSuffix(s, "/16") {
			t.Fatalf("slice %s outside 242.0.0.0/8 or not a /16", s)
		}
	}
}

// recv reads the next non-progress event.
func recv(t *testing.T, s v1.MemberService_WatchClient) *v1.WatchEvent {
	t.Helper()
	for {
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != v1.EventType_EVENT_TYPE_PROGRESS {
			return ev
		}
	}
}

func TestWatchOrderResumeAndPersistence(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c1creds, c1 := e.join("c1", "10.1.0.0/16", "10.101.0.0/16", false)
	c2creds, c2 := e.join("c2", "10.2.0.0/16", "10.102.0.0/16", false)

	stream, err := c1.Watch(ctx, &v1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, stream); ev.Type != v1.EventType_EVENT_TYPE_SNAPSHOT_BEGIN {
		t.Fatalf("first event %v, want SNAPSHOT_BEGIN", ev.Type)
	}
	var snapRev int64
	clusters := 0
	for {
		ev := recv(t, stream)
		if ev.Type == v1.EventType_EVENT_TYPE_SNAPSHOT_END {
			snapRev = ev.Revision
			break
		}
		if ev.GetCluster() != nil {
			clusters++
		}
	}
	if clusters != 2 {
		t.Fatalf("snapshot had %d clusters, want 2", clusters)
	}
	// c2's changes arrive at c1 in order.
	for i, gw := range []string{"gw-a", "gw-b", "gw-c"} {
		if _, err := c2.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint("c2", gw, "10.2.0.0/16")}); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, err := c2.DeleteEndpoint(ctx, &v1.DeleteEndpointRequest{ClusterId: "c2", Gateway: "gw-a"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []string{"PUT gw-a", "PUT gw-b", "DELETE gw-a", "PUT gw-c"}
	var last int64 = snapRev
	for _, w := range want {
		ev := recv(t, stream)
		got := strings.TrimPrefix(ev.Type.String(), "EVENT_TYPE_") + " " + ev.GetEndpoint().GetGateway()
		if got != w || ev.Revision <= last {
			t.Fatalf("event %q at revision %d (after %d), want %q", got, ev.Revision, last, w)
		}
		last = ev.Revision
	}

	// Broker restart: data and the CA persist (the certificates issued
	// before still work), and a watch resumes from the last revision with
	// deltas only, no snapshot.
	e.restart()
	c2 = e.member(c2creds)
	c1 = e.member(c1creds)
	if _, err := c2.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint("c2", "gw-d", "10.2.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	resumed, err := c1.Watch(ctx, &v1.WatchRequest{FromRevision: last})
	if err != nil {
		t.Fatal(err)
	}
	ev := recv(t, resumed)
	if ev.Type != v1.EventType_EVENT_TYPE_PUT || ev.GetEndpoint().GetGateway() != "gw-d" || ev.Revision <= last {
		t.Fatalf("resumed stream starts with %v %v at %d, want PUT gw-d after %d", ev.Type, ev.GetEndpoint().GetGateway(), ev.Revision, last)
	}
	resp, err := e.adminClient().ListClusters(ctx, &v1.ListClustersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Clusters) != 2 || resp.Endpoints["c2"] != 3 {
		t.Fatalf("after restart: %d clusters, c2 endpoints %d (want 2, 3)", len(resp.Clusters), resp.Endpoints["c2"])
	}
}

func TestStaleClustersLoseEndpointsButNotOnBrokerRestart(t *testing.T) {
	e := newEnv(t, func(o *broker.Options) { o.StaleAfter = time.Minute })
	ctx := context.Background()
	_, c1 := e.join("c1", "10.1.0.0/16", "10.101.0.0/16", false)
	_, c2 := e.join("c2", "10.2.0.0/16", "10.102.0.0/16", false)
	for _, m := range []struct {
		c  v1.MemberServiceClient
		id string
	}{{c1, "c1"}, {c2, "c2"}} {
		if _, err := m.c.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: endpoint(m.id, m.id+"-gw", "10."+m.id[1:]+".0.0/16")}); err != nil {
			t.Fatal(err)
		}
	}
	// A broker restart long after the last heartbeats: nobody is stale.
	e.clock.Add(10 * time.Minute)
	e.restart()
	if n, err := e.srv.SweepStale(ctx); err != nil || n != 0 {
		t.Fatalf("sweep right after restart marked %d (err %v), want 0", n, err)
	}
	// Re-joining an existing id needs a token bound to it.
	c1 = e.member(mustCredsFor(t, e, "c1", "10.1.0.0/16", "10.101.0.0/16"))
	// c1 heartbeats, c2 stays silent past the grace period.
	e.clock.Add(50 * time.Second)
	if _, err := c1.Heartbeat(ctx, &v1.HeartbeatRequest{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(20 * time.Second)
	if n, err := e.srv.SweepStale(ctx); err != nil || n != 1 {
		t.Fatalf("sweep marked %d (err %v), want 1", n, err)
	}
	resp, err := e.adminClient().ListClusters(ctx, &v1.ListClustersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Clusters {
		if c.Stale != (c.Id == "c2") {
			t.Fatalf("cluster %s stale=%v", c.Id, c.Stale)
		}
	}
	if resp.Endpoints["c2"] != 0 || resp.Endpoints["c1"] != 1 {
		t.Fatalf("endpoints after sweep: %v", resp.Endpoints)
	}
}

func mustCredsFor(t *testing.T, e *env, id, pod, svc string) *client.Credentials {
	t.Helper()
	creds, _, err := client.Join(context.Background(), client.JoinOptions{
		Token:   e.token(&v1.CreateTokenRequest{ClusterId: id}),
		Cluster: &v1.ClusterInfo{Id: id, PodCidrs: []string{pod}, ServiceCidrs: []string{svc}},
	})
	if err != nil {
		t.Fatalf("re-join %s: %v", id, err)
	}
	return creds
}

func TestNewRefusesBadAddresses(t *testing.T) {
	for _, addrs := range [][]string{{"no-port"}, {"198.51.100.1:0"}, {""}} {
		_, err := broker.New(context.Background(), broker.Options{Store: &store.Store{}, Addresses: addrs})
		if err == nil || !strings.Contains(err.Error(), "addresses") {
			t.Errorf("addresses %q: err = %v, want an error naming addresses", addrs, err)
		}
	}
}
