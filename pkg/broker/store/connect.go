package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultDialTimeout bounds connecting to etcd when no DialTimeout is set.
const DefaultDialTimeout = 5 * time.Second

// ConnectOptions configure Connect.
type ConnectOptions struct {
	// Endpoints are the client URLs of the etcd members, e.g.
	// "https://10.0.0.1:2379". Required.
	Endpoints []string
	// DialTimeout bounds dialing and the initial health probe
	// (default DefaultDialTimeout).
	DialTimeout time.Duration
	// TLS is the client TLS configuration; nil dials without TLS.
	TLS *tls.Config
	// Username and Password enable etcd authentication when set.
	Username, Password string
	// Logger receives the etcd client's log records at or above LogLevel
	// (default slog.LevelWarn). nil means slog.Default().
	Logger   *slog.Logger
	LogLevel slog.Leveler
}

// Connect dials an external etcd cluster and checks that it answers a
// linearizable read (so a quorum is up) before returning the client. The
// caller closes the client.
func Connect(ctx context.Context, o ConnectOptions) (*clientv3.Client, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("store: connect: no etcd endpoints")
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cli, err := newClient(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		TLS:         o.TLS,
		Username:    o.Username,
		Password:    o.Password,
		Logger:      newZapLogger(o.Logger, o.LogLevel, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("store: connect to etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	if err := probe(ctx, cli, o.DialTimeout); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("store: connect to etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	return cli, nil
}

// newClient fills in the keepalive settings weft wants for every client.
func newClient(cfg clientv3.Config) (*clientv3.Client, error) {
	// Detect a dead connection (a member that vanished without closing
	// TCP) within about 15 s, and keep idle watch streams checked.
	cfg.DialKeepAliveTime = 10 * time.Second
	cfg.DialKeepAliveTimeout = 5 * time.Second
	cfg.PermitWithoutStream = true
	return clientv3.New(cfg)
}

// probe does a linearizable read, which needs a leader and a quorum. As in
// `etcdctl endpoint health`, a permission error still proves the cluster
// answered.
func probe(ctx context.Context, cli *clientv3.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := cli.Get(ctx, "health", clientv3.WithCountOnly())
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		return fmt.Errorf("health probe: %w", err)
	}
	return nil
}
