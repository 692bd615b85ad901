package broker

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/store"
	"github.com/weftnet/weft/pkg/broker/validate"
)

// ListClusters implements AdminService.
func (s *Server) ListClusters(ctx context.Context, _ *v1.ListClustersRequest) (*v1.ListClustersResponse, error) {
	view, err := s.readClusters(ctx)
	if err != nil {
		return nil, err
	}
	beats, err := s.heartbeats(ctx)
	if err != nil {
		return nil, err
	}
	resp := &v1.ListClustersResponse{Endpoints: map[string]uint32{}, Exports: map[string]uint32{}}
	for _, c := range view.clusters {
		if t, ok := beats[c.Id]; ok {
			c.LastHeartbeat = timestamppb.New(t)
		}
		resp.Clusters = append(resp.Clusters, c)
	}
	for prefix, m := range map[string]map[string]uint32{prefixEndpoints: resp.Endpoints, prefixExports: resp.Exports} {
		keys, err := s.keysUnder(ctx, prefix)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			id, _, _ := strings.Cut(strings.TrimPrefix(k, prefix), "/")
			m[id]++
		}
	}
	return resp, nil
}

func (s *Server) keysUnder(ctx context.Context, prefix string) ([]string, error) {
	kvs, _, err := s.st.List(ctx, prefix)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list %s: %v", prefix, err)
	}
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out, nil
}

func (s *Server) heartbeats(ctx context.Context) (map[string]time.Time, error) {
	kvs, _, err := s.st.List(ctx, prefixHeartbeats)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list heartbeats: %v", err)
	}
	out := make(map[string]time.Time, len(kvs))
	for _, kv := range kvs {
		if t, err := time.Parse(timeFormat, string(kv.Value)); err == nil {
			out[strings.TrimPrefix(kv.Key, prefixHeartbeats)] = t
		}
	}
	return out, nil
}

// EvictCluster implements AdminService: the cluster's records go, and its
// certificate stops working (member RPCs need a cluster record).
func (s *Server) EvictCluster(ctx context.Context, req *v1.EvictClusterRequest) (*v1.EvictClusterResponse, error) {
	if err := validate.ClusterID(req.ClusterId); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	rev, err := s.removeCluster(ctx, req.ClusterId)
	if err != nil {
		if status.Code(err) == codes.PermissionDenied {
			return nil, status.Errorf(codes.NotFound, "cluster %q not found", req.ClusterId)
		}
		return nil, err
	}
	return &v1.EvictClusterResponse{Revision: rev}, nil
}

// SweepStale marks clusters silent for longer than the grace period stale
// and withdraws their endpoints. Silence is counted from the later of the
// last heartbeat and this broker's start, so a broker outage never makes
// members stale. Safe to run on every replica: each change is conditional
// on the record it read.
func (s *Server) SweepStale(ctx context.Context) (int, error) {
	view, err := s.readClusters(ctx)
	if err != nil {
		return 0, err
	}
	beats, err := s.heartbeats(ctx)
	if err != nil {
		return 0, err
	}
	now := s.o.Now()
	marked := 0
	for _, c := range view.clusters {
		last := s.started
		if t, ok := beats[c.Id]; ok && t.After(last) {
			last = t
		}
		if c.Stale || now.Sub(last) <= s.o.StaleAfter {
			continue
		}
		kv, found, err := s.st.Get(ctx, clusterKey(c.Id))
		if err != nil || !found {
			continue
		}
		next := proto.Clone(c).(*v1.Cluster)
		next.Stale = true
		raw, err := proto.Marshal(next)
		if err != nil {
			continue
		}
		_, ok, err := s.st.Apply(ctx,
			[]store.Op{store.OpPut(clusterKey(c.Id), raw), store.OpDeletePrefix(endpointsOf(c.Id))},
			[]store.Cond{store.IfModRevision(clusterKey(c.Id), kv.ModRevision)})
		if err != nil {
			return marked, status.Errorf(codes.Unavailable, "mark %s stale: %v", c.Id, err)
		}
		if ok {
			marked++
			s.log.Warn("cluster stale: endpoints withdrawn", "cluster", c.Id, "silent_for", now.Sub(last).Round(time.Second))
		}
	}
	return marked, nil
}

// RunStaleSweeper sweeps every heartbeat interval until ctx ends.
func (s *Server) RunStaleSweeper(ctx context.Context) {
	t := time.NewTicker(s.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.SweepStale(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("stale sweep failed", "err", err)
			}
		}
	}
}
