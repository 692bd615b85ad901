package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// DefaultReadyTimeout bounds how long StartEmbedded waits for etcd to be
// ready when no ReadyTimeout is set.
const DefaultReadyTimeout = time.Minute

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	// DataDir is where etcd keeps its data; created (mode 0700) if missing.
	// Starting again on the same directory continues where the last run
	// stopped. Required.
	DataDir string
	// Name is the etcd member name (default "weft"). Keep it stable across
	// restarts on the same DataDir.
	Name string
	// ClientPort and PeerPort are the loopback ports etcd listens on for
	// clients and for (unused, single-node) peer traffic. 0 picks a free
	// port.
	ClientPort, PeerPort int
	// ReadyTimeout bounds the wait for etcd to be ready (default
	// DefaultReadyTimeout). ctx can end the wait earlier.
	ReadyTimeout time.Duration
	// Logger receives etcd's log records at or above LogLevel (default
	// slog.LevelWarn; etcd is chatty at info). nil means slog.Default().
	Logger   *slog.Logger
	LogLevel slog.Leveler
	// QuotaBackendBytes is the backend size quota; 0 means etcd's default
	// (2 GiB).
	QuotaBackendBytes int64
	// AutoCompactionRetention, when > 0, makes etcd compact history older
	// than this periodically. 0 leaves compaction to the caller (Compact).
	AutoCompactionRetention time.Duration
	// UnsafeNoFsync disables fsync: faster, loses data on power failure.
	// For tests only.
	UnsafeNoFsync bool
}

// Embedded is a single-node etcd running inside this process, listening on
// 127.0.0.1 only.
type Embedded struct {
	etcd     *embed.Etcd
	cli      *clientv3.Client
	endpoint string
	once     sync.Once
	closeErr error
	// closing demotes etcd's shutdown noise (listeners reported closed as
	// errors) while Close runs.
	closing *atomic.Bool
}

// maxPortAttempts bounds restarts after a picked free port was taken by
// someone else before etcd bound it.
const maxPortAttempts = 5

// StartEmbedded starts a single-node etcd on o.DataDir, waits until it
// serves requests and connects a client to it. Close stops both.
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	if o.DataDir == "" {
		return nil, errors.New("store: start embedded etcd: no data dir")
	}
	if o.Name == "" {
		o.Name = "weft"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	closing := new(atomic.Bool)
	zl := newZapLogger(o.Logger, o.LogLevel, closing)
	ctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()

	var (
		e       *embed.Etcd
		cfg     *embed.Config
		lastErr error
	)
	for attempt := 1; e == nil; attempt++ {
		clientPort, peerPort, err := pickPorts(o.ClientPort, o.PeerPort)
		if err != nil {
			return nil, fmt.Errorf("store: start embedded etcd in %s: %w", o.DataDir, err)
		}
		cfg = embedConfig(o, clientPort, peerPort)
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)
		e, err = embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			picked := o.ClientPort == 0 || o.PeerPort == 0
			if picked && isAddrInUse(err) && attempt < maxPortAttempts && ctx.Err() == nil {
				o.Logger.Debug("embedded etcd: port taken, retrying", "attempt", attempt, "err", err)
				continue
			}
			return nil, fmt.Errorf("store: start embedded etcd in %s: %w", o.DataDir, lastErr)
		}
	}

	stop := func() {
		closing.Store(true)
		e.Close()
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stop()
		return nil, fmt.Errorf("store: start embedded etcd in %s: %w", o.DataDir, err)
	case <-e.Server.StopNotify():
		stop()
		return nil, fmt.Errorf("store: start embedded etcd in %s: server stopped while starting", o.DataDir)
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("store: start embedded etcd in %s: waiting for ready: %w", o.DataDir, ctx.Err())
	}

	endpoint := cfg.AdvertiseClientUrls[0].String()
	cli, err := newClient(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: DefaultDialTimeout,
		Logger:      zl,
	})
	if err == nil {
		if err = probe(ctx, cli, DefaultDialTimeout); err != nil {
			_ = cli.Close()
		}
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("store: connect to embedded etcd at %s: %w", endpoint, err)
	}
	return &Embedded{etcd: e, cli: cli, endpoint: endpoint, closing: closing}, nil
}

func embedConfig(o EmbeddedOptions, clientPort, peerPort int) *embed.Config {
	cu := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	pu := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.DataDir
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	cfg.EnableGRPCGateway = false
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.QuotaBackendBytes = o.QuotaBackendBytes
	if o.AutoCompactionRetention > 0 {
		cfg.AutoCompactionMode = embed.CompactorModePeriodic
		cfg.AutoCompactionRetention = o.AutoCompactionRetention.String()
	}
	cfg.UnsafeNoFsync = o.UnsafeNoFsync
	// No etcd auth on a loopback-only member: skip the token provider
	// (and its warning about unsigned simple tokens).
	cfg.AuthToken = ""
	// NewConfig leaves this 0, which makes etcd log every request as slow.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	return cfg
}

// pickPorts returns the given ports, with free loopback ports in place of
// zeros.
func pickPorts(client, peer int) (int, int, error) {
	var err error
	if client == 0 {
		if client, err = freePort(); err != nil {
			return 0, 0, err
		}
	}
	for peer == 0 || peer == client {
		if peer, err = freePort(); err != nil {
			return 0, 0, err
		}
	}
	return client, peer, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. Some
// other process may take it before the caller binds it; retry then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// Client returns the client connected to the embedded etcd. It stays
// valid until Close.
func (e *Embedded) Client() *clientv3.Client { return e.cli }

// Endpoint returns the client URL etcd listens on (http://127.0.0.1:port).
func (e *Embedded) Endpoint() string { return e.endpoint }

// Err reports a fatal error of the running etcd (for example a listener
// failing); the broker should stop when it receives one.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close closes the client and stops etcd, waiting until its data is
// flushed to disk. It is safe to call more than once.
func (e *Embedded) Close() error {
	e.once.Do(func() {
		if err := e.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			e.closeErr = fmt.Errorf("store: close embedded etcd client: %w", err)
		}
		e.closing.Store(true)
		e.etcd.Close()
	})
	return e.closeErr
}
