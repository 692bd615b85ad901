// Command broker runs weft's broker: the gRPC meeting point where member
// clusters join with a token and exchange endpoints and service exports.
// Storage is an embedded single-node etcd (--data-dir) or an external etcd
// cluster (--etcd-endpoints), shared by any number of broker replicas.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/broker"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/broker/store"
)

type config struct {
	listen, advertise, dataDir, etcdEndpoints, metricsAddr, adminOut string
	heartbeat, staleAfter                                            time.Duration
	etcdClientPort, joinBurst                                        int
	joinRate                                                         float64
	unsafeNoFsync                                                    bool
}

func main() {
	var c config
	fs := flag.NewFlagSet("broker", flag.ExitOnError)
	fs.StringVar(&c.listen, "listen", ":7443", "gRPC (TLS) listen address")
	fs.StringVar(&c.advertise, "advertise", "", "comma-separated host:port members dial (default: the listen address if it names a host)")
	fs.StringVar(&c.dataDir, "data-dir", "/var/lib/weft-broker", "embedded etcd data and the admin credential")
	fs.StringVar(&c.etcdEndpoints, "etcd-endpoints", "", "comma-separated external etcd endpoints (default: embedded etcd in --data-dir)")
	fs.IntVar(&c.etcdClientPort, "embedded-etcd-port", 0, "loopback port of the embedded etcd (0: any free port)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":9470", "HTTP address for /metrics and /healthz (empty: off)")
	fs.StringVar(&c.adminOut, "admin-config", "", "where to write the admin credential if absent (default <data-dir>/admin.json)")
	fs.DurationVar(&c.heartbeat, "heartbeat-interval", 10*time.Second, "heartbeat interval members keep")
	fs.DurationVar(&c.staleAfter, "stale-after", 5*time.Minute, "silence after which a cluster is stale and its endpoints withdrawn")
	fs.Float64Var(&c.joinRate, "join-rate", 1, "join attempts per second allowed per source address")
	fs.IntVar(&c.joinBurst, "join-burst", 5, "burst of join attempts per source address")
	fs.BoolVar(&c.unsafeNoFsync, "unsafe-no-fsync", false, "embedded etcd without fsync (tests and benchmarks only: loses data on power failure)")
	fs.Parse(os.Args[1:])
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		log.Error("broker failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, log *slog.Logger) error {
	addrs := splitList(c.advertise)
	if len(addrs) == 0 {
		if host, _, err := net.SplitHostPort(c.listen); err == nil && host != "" {
			addrs = []string{c.listen}
		} else {
			return errors.New("--advertise: unset and --listen names no host; members need an address to dial")
		}
	}
	if c.adminOut == "" {
		c.adminOut = filepath.Join(c.dataDir, "admin.json")
	}
	var cli *clientv3.Client
	if eps := splitList(c.etcdEndpoints); len(eps) > 0 {
		var err error
		if cli, err = store.Connect(ctx, store.ConnectOptions{Endpoints: eps}); err != nil {
			return err
		}
		defer cli.Close()
		log.Info("using external etcd", "endpoints", eps)
	} else {
		emb, err := store.StartEmbedded(ctx, store.EmbeddedOptions{
			DataDir: filepath.Join(c.dataDir, "etcd"), ClientPort: c.etcdClientPort, Logger: log,
			AutoCompactionRetention: time.Hour, UnsafeNoFsync: c.unsafeNoFsync,
		})
		if err != nil {
			return err
		}
		defer emb.Close()
		cli = emb.Client()
		log.Info("embedded etcd ready", "endpoint", emb.Endpoint(), "data_dir", c.dataDir)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := broker.New(ctx, broker.Options{
		Store: store.New(cli, ""), Addresses: addrs, Logger: log, Registerer: reg,
		HeartbeatInterval: c.heartbeat, StaleAfter: c.staleAfter,
		JoinRate: c.joinRate, JoinBurst: c.joinBurst,
	})
	if err != nil {
		return err
	}
	if err := writeAdminIfAbsent(srv, c.adminOut, addrs); err != nil {
		return err
	}
	g, err := srv.GRPCServer()
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	go srv.RunStaleSweeper(ctx)
	if c.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			hctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if _, err := cli.Get(hctx, "health"); err != nil {
				http.Error(w, "etcd: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		hs := &http.Server{Addr: c.metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer hs.Close()
	}
	log.Info("broker serving", "listen", lis.Addr().String(), "advertise", addrs, "ca_pin", srv.Pin(), "admin_config", c.adminOut)
	go func() {
		<-ctx.Done()
		g.GracefulStop()
	}()
	return g.Serve(lis)
}

// writeAdminIfAbsent issues the admin credential (a client certificate of
// kind admin) into path, once.
func writeAdminIfAbsent(srv *broker.Server, path string, addrs []string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR("admin")
	if err != nil {
		return err
	}
	certPEM, err := srv.IssueAdmin(csrPEM, 5*365*24*time.Hour)
	if err != nil {
		return err
	}
	raw, err := (&client.Credentials{ClusterID: "admin", Addresses: addrs, CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: srv.CA().CertPEM()}).Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("admin credential: %w", err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("admin credential: %w", err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
