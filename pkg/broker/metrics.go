package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

// metrics are the weft_broker_* series.
type metrics struct {
	rpc     *prometheus.HistogramVec
	tokens  *prometheus.CounterVec
	streams prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_broker_rpc_duration_seconds", Help: "Broker RPC latency by method and gRPC code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method", "code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_broker_token_outcomes_total", Help: "Join token outcomes (joined, created, revoked, wrong_secret, expired, ...).",
		}, []string{"outcome"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_broker_watch_streams", Help: "Open member watch streams on this replica.",
		}),
	}
	if reg == nil {
		return m
	}
	count := func(prefix string) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			resp, err := s.st.Client().Get(ctx, s.st.Prefix()+prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return -1
			}
			return float64(resp.Count)
		}
	}
	reg.MustRegister(m.rpc, m.tokens, m.streams,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_broker_clusters", Help: "Member clusters."}, count(prefixClusters)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_broker_endpoints", Help: "Gateway endpoints."}, count(prefixEndpoints)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_broker_exports", Help: "Service exports."}, count(prefixExports)),
	)
	return m
}

func (m *metrics) observe(method string, err error, d time.Duration) {
	m.rpc.WithLabelValues(method, status.Code(err).String()).Observe(d.Seconds())
}

func (m *metrics) token(outcome string) { m.tokens.WithLabelValues(outcome).Inc() }
