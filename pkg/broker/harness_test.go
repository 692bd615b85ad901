package broker_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/broker/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a broker on loopback over a real embedded etcd.
type env struct {
	t       *testing.T
	dataDir string
	addr    string
	clock   *clock
	opts    broker.Options

	emb   *store.Embedded
	srv   *broker.Server
	grpc  *grpc.Server
	admin *client.Credentials
}

func newEnv(t *testing.T, mod func(*broker.Options)) *env {
	t.Helper()
	// The test clock starts in the past so tests can move it forward
	// without certificates becoming "not yet valid" for real-time TLS.
	e := &env{t: t, dataDir: t.TempDir(), clock: &clock{t: time.Now().Add(-3 * time.Hour)}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	lis.Close()
	e.opts = broker.Options{Addresses: []string{e.addr}, Now: e.clock.Now, JoinRate: 1000, JoinBurst: 1000}
	if mod != nil {
		mod(&e.opts)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	t := e.t
	t.Helper()
	ctx := context.Background()
	emb, err := store.StartEmbedded(ctx, store.EmbeddedOptions{DataDir: e.dataDir, UnsafeNoFsync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e.emb = emb
	o := e.opts
	o.Store = store.New(emb.Client(), "")
	e.srv, err = broker.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	e.grpc, err = e.srv.GRPCServer()
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	for i := 0; i < 50; i++ { // the port may linger briefly after a restart
		if lis, err = net.Listen("tcp", e.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	go e.grpc.Serve(lis)
	keyPEM, csrPEM, err := ca.NewKeyAndCSR("admin")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := e.srv.IssueAdmin(csrPEM, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.admin = &client.Credentials{ClusterID: "admin", Addresses: []string{e.addr}, CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: e.srv.CA().CertPEM()}
}

func (e *env) stop() {
	if e.grpc != nil {
		e.grpc.Stop()
		e.grpc = nil
	}
	if e.emb != nil {
		e.emb.Close()
		e.emb = nil
	}
}

func (e *env) restart() {
	e.stop()
	e.start()
}

func (e *env) adminClient() v1.AdminServiceClient {
	conn, err := client.Dial(e.admin, "")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return v1.NewAdminServiceClient(conn)
}

func (e *env) token(req *v1.CreateTokenRequest) string {
	e.t.Helper()
	resp, err := e.adminClient().CreateToken(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Token
}

// join joins a cluster with a fresh token and returns a member client.
func (e *env) join(id string, pod, svc string, globalnet bool) (*client.Credentials, v1.MemberServiceClient) {
	e.t.Helper()
	creds, _, err := client.Join(context.Background(), client.JoinOptions{
		Token:   e.token(&v1.CreateTokenRequest{}),
		Cluster: &v1.ClusterInfo{Id: id, PodCidrs: []string{pod}, ServiceCidrs: []string{svc}, WantsGlobalnet: globalnet},
	})
	if err != nil {
		e.t.Fatalf("join %s: %v", id, err)
	}
	return creds, e.member(creds)
}

func (e *env) member(creds *client.Credentials) v1.MemberServiceClient {
	conn, err := client.Dial(creds, "")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return v1.NewMemberServiceClient(conn)
}

func endpoint(cluster, gw string, subnets ...string) *v1.Endpoint {
	key := make([]byte, 32)
	key[0] = byte(len(cluster)) + 1
	copy(key[1:], cluster)
	return &v1.Endpoint{ClusterId: cluster, Gateway: gw, PublicKey: key, PrivateIp: "198.19.1.11", PublicIp: "198.18.0.11", Port: 51820, Subnets: subnets}
}
