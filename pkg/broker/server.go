package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/store"
	"github.com/weftnet/weft/pkg/broker/token"
	"github.com/weftnet/weft/pkg/cidr"
)

// Options configure a Server.
type Options struct {
	// Store holds every record; required.
	Store *store.Store
	// Addresses ("host:port") members dial; written into join tokens and
	// the serving certificate. Required.
	Addresses []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer receives the weft_broker_* metrics; nil skips them.
	Registerer prometheus.Registerer

	// ClientCertValidity of member certificates (default 30 days; members
	// renew at two thirds).
	ClientCertValidity time.Duration
	// DefaultTokenTTL applies when CreateToken gives none (default 24 h);
	// MaxTokenTTL bounds any TTL (default 30 days).
	DefaultTokenTTL, MaxTokenTTL time.Duration
	// HeartbeatInterval members should keep (default 10 s) and the grace
	// period after which a silent cluster is stale and its endpoints are
	// withdrawn (default 5 min).
	HeartbeatInterval, StaleAfter time.Duration
	// GlobalRange and GlobalSliceBits configure globalnet allocation
	// (default 242.0.0.0/8, /16 per cluster).
	GlobalRange     netip.Prefix
	GlobalSliceBits int
	// JoinRate limits join attempts per source address (default 1/s, burst 5).
	JoinRate  float64
	JoinBurst int
	// ProgressInterval is how often idle watch streams get a PROGRESS event
	// (default 30 s).
	ProgressInterval time.Duration
}

func (o *Options) defaults() error {
	if o.Store == nil {
		return errors.New("broker: options: store: unset")
	}
	if len(o.Addresses) == 0 {
		return errors.New("broker: options: addresses: unset (members need an address to dial)")
	}
	if err := token.ValidateAddresses(o.Addresses); err != nil {
		return fmt.Errorf("broker: options: addresses: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ClientCertValidity, 30*24*time.Hour)
	def(&o.DefaultTokenTTL, 24*time.Hour)
	def(&o.MaxTokenTTL, 30*24*time.Hour)
	def(&o.HeartbeatInterval, 10*time.Second)
	def(&o.StaleAfter, 5*time.Minute)
	def(&o.ProgressInterval, 30*time.Second)
	if o.JoinRate <= 0 {
		o.JoinRate = 1
	}
	if o.JoinBurst <= 0 {
		o.JoinBurst = 5
	}
	return nil
}

// Server implements the broker's three gRPC services.
type Server struct {
	v1.UnimplementedJoinServiceServer
	v1.UnimplementedMemberServiceServer
	v1.UnimplementedAdminServiceServer

	o       Options
	st      *store.Store
	log     *slog.Logger
	ca      *ca.CA
	alloc   *cidr.Allocator
	started time.Time
	limiter *joinLimiter
	m       *metrics

	// clusterMu serializes this replica's cluster-set writes (join,
	// PutCluster); see Join.
	clusterMu sync.Mutex
}

// New loads the CA from the store, creating it on first start (exactly one
// replica wins the creation race; the others load its CA).
func New(ctx context.Context, o Options) (*Server, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	alloc, err := cidr.NewAllocator(cidr.AllocatorOptions{Range: o.GlobalRange, SliceBits: o.GlobalSliceBits})
	if err != nil {
		return nil, fmt.Errorf("broker: globalnet range: %w", err)
	}
	authority, created, err := loadOrCreateCA(ctx, o.Store, o.Now())
	if err != nil {
		return nil, err
	}
	s := &Server{
		o: o, st: o.Store, log: o.Logger, ca: authority, alloc: alloc, started: o.Now(),
		limiter: newJoinLimiter(o.JoinRate, o.JoinBurst, o.Now),
	}
	s.m = newMetrics(o.Registerer, s)
	s.log.Info("broker ready", "ca_created", created, "ca_pin", s.Pin(), "addresses", o.Addresses)
	return s, nil
}

type storedCA struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

func loadOrCreateCA(ctx context.Context, st *store.Store, now time.Time) (*ca.CA, bool, error) {
	kv, found, err := st.Get(ctx, keyCA)
	if err != nil {
		return nil, false, fmt.Errorf("broker: read CA: %w", err)
	}
	if !found {
		fresh, err := ca.New(ca.Options{Now: now})
		if err != nil {
			return nil, false, err
		}
		certPEM, keyPEM, err := fresh.MarshalPEM()
		if err != nil {
			return nil, false, err
		}
		raw, _ := json.Marshal(storedCA{Cert: certPEM, Key: keyPEM})
		_, created, err := st.Create(ctx, keyCA, raw)
		if err != nil {
			return nil, false, fmt.Errorf("broker: store CA: %w", err)
		}
		if created {
			return fresh, true, nil
		}
		// Another replica was first: use its CA.
		if kv, found, err = st.Get(ctx, keyCA); err != nil || !found {
			return nil, false, fmt.Errorf("broker: read CA after losing the creation race: found=%v: %w", found, err)
		}
	}
	var sc storedCA
	if err := json.Unmarshal(kv.Value, &sc); err != nil {
		return nil, false, fmt.Errorf("broker: stored CA: %w", err)
	}
	c, err := ca.Load(sc.Cert, sc.Key)
	if err != nil {
		return nil, false, fmt.Errorf("broker: stored CA: %w", err)
	}
	return c, false, nil
}

// CA is the broker's certificate authority.
func (s *Server) CA() *ca.CA { return s.ca }

// Pin is the CA public-key pin members verify the broker with.
func (s *Server) Pin() string { return pinOf(s.ca) }

// IssueAdmin signs an admin client certificate over csrPEM (for the admin
// credential written at broker init).
func (s *Server) IssueAdmin(csrPEM []byte, validity time.Duration) ([]byte, error) {
	return s.ca.SignClient(csrPEM, ca.Identity{Kind: ca.KindAdmin, Name: "admin"}, validity, s.o.Now())
}

// TLSConfig returns the serving TLS configuration: a fresh serving
// certificate for the advertised hosts (plus loopback), the CA in the
// chain so joining members can check it against their pin, and client
// certificates verified against the CA when presented.
func (s *Server) TLSConfig() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	for _, a := range s.o.Addresses {
		if h, _, err := net.SplitHostPort(a); err == nil { // validated in New
			hosts = append(hosts, h)
		}
	}
	certPEM, err := s.ca.SignServer(key.Public(), hosts, 365*24*time.Hour, s.o.Now())
	if err != nil {
		return nil, err
	}
	leaf, err := ca.ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{leaf.Raw, s.ca.Cert().Raw},
			PrivateKey:  key,
			Leaf:        leaf,
		}},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  s.ca.Pool(),
	}, nil
}

// GRPCServer builds a gRPC server with TLS, the authorization and metrics
// interceptors, and the three services registered.
func (s *Server) GRPCServer(extra ...grpc.ServerOption) (*grpc.Server, error) {
	tc, err := s.TLSConfig()
	if err != nil {
		return nil, err
	}
	opts := append([]grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tc)),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.MaxRecvMsgSize(4 << 20),
	}, extra...)
	g := grpc.NewServer(opts...)
	v1.RegisterJoinServiceServer(g, s)
	v1.RegisterMemberServiceServer(g, s)
	v1.RegisterAdminServiceServer(g, s)
	return g, nil
}

type identityKey struct{}

// identity returns the caller's verified certificate identity.
func identity(ctx context.Context) (ca.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(ca.Identity)
	return id, ok
}

// authorize maps the method to the identity kind it needs and puts the
// identity into the context.
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	var need ca.Kind
	switch {
	case strings.HasPrefix(method, "/"+v1.JoinService_ServiceDesc.ServiceName+"/"):
		return ctx, nil
	case strings.HasPrefix(method, "/"+v1.MemberService_ServiceDesc.ServiceName+"/"):
		need = ca.KindCluster
	case strings.HasPrefix(method, "/"+v1.AdminService_ServiceDesc.ServiceName+"/"):
		need = ca.KindAdmin
	default:
		return nil, status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil, status.Error(codes.Unauthenticated, "a client certificate signed by the broker CA is required")
	}
	id, err := ca.IdentityOf(ti.State.VerifiedChains[0][0])
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if id.Kind != need {
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s (needs a %s certificate)", id, method, need)
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx, err := s.authorize(ctx, info.FullMethod)
	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
	}
	s.m.observe(info.FullMethod, err, time.Since(start))
	return resp, err
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrappedStream) Context() context.Context { return w.ctx }

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx, err := s.authorize(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, wrappedStream{ServerStream: ss, ctx: ctx})
	}
	s.m.observe(info.FullMethod, err, time.Since(start))
	return err
}

// callerCluster returns the calling cluster's id, or an error when the
// caller is not a cluster.
func callerCluster(ctx context.Context) (string, error) {
	id, ok := identity(ctx)
	if !ok || id.Kind != ca.KindCluster {
		return "", status.Error(codes.Unauthenticated, "not a cluster identity")
	}
	return id.Name, nil
}

// peerHost is the caller's IP, for rate limiting.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
		return ap.Addr().String()
	}
	return p.Addr.String()
}
