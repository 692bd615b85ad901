package broker

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/store"
	"github.com/weftnet/weft/pkg/broker/validate"
)

// RenewCertificate implements MemberService.
func (s *Server) RenewCertificate(ctx context.Context, req *v1.RenewCertificateRequest) (*v1.RenewCertificateResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.joined(ctx, id); err != nil {
		return nil, err
	}
	certPEM, err := s.ca.SignClient(req.CsrPem, ca.Identity{Kind: ca.KindCluster, Name: id}, s.o.ClientCertValidity, s.o.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr_pem: %v", err)
	}
	return &v1.RenewCertificateResponse{CertificatePem: certPEM, CaPem: s.ca.CertPEM()}, nil
}

// PutCluster implements MemberService: a cluster updates its own CIDRs.
// Fields set by the broker (global CIDR, globalnet, times, staleness) keep
// their stored values.
func (s *Server) PutCluster(ctx context.Context, req *v1.PutClusterRequest) (*v1.PutClusterResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetCluster()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "cluster: unset")
	}
	if in.Id != id {
		return nil, permission(id, "cluster.id", in.Id)
	}
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	for attempt := 0; attempt < 20; attempt++ {
		if attempt > 0 {
			if err := retryPause(ctx, attempt); err != nil {
				return nil, status.FromContextError(err).Err()
			}
		}
		view, err := s.readClusters(ctx)
		if err != nil {
			return nil, err
		}
		cur := view.get(id)
		if cur == nil {
			_, _, err := s.joined(ctx, id)
			return nil, err
		}
		next := proto.Clone(cur).(*v1.Cluster)
		next.PodCidrs, next.ServiceCidrs = in.PodCidrs, in.ServiceCidrs
		if err := validate.Cluster(next, view.others(id)); err != nil {
			return nil, fieldErrors("cluster", err)
		}
		raw, err := proto.Marshal(next)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode: %v", err)
		}
		rev, ok, err := s.st.Apply(ctx,
			[]store.Op{store.OpPut(clusterKey(id), raw), store.OpPut(keyClusterGuard, []byte(id))},
			[]store.Cond{store.IfModRevision(keyClusterGuard, view.guardRev), store.IfExists(clusterKey(id))})
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "store cluster: %v", err)
		}
		if ok {
			return &v1.PutClusterResponse{Cluster: next, Revision: rev}, nil
		}
	}
	return nil, status.Error(codes.Aborted, "too much concurrent change; retry")
}

// DeleteCluster implements MemberService: the cluster leaves, with all its
// records and its global CIDR.
func (s *Server) DeleteCluster(ctx context.Context, req *v1.DeleteClusterRequest) (*v1.DeleteClusterResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	if req.ClusterId != id {
		return nil, permission(id, "cluster_id", req.ClusterId)
	}
	rev, err := s.removeCluster(ctx, id)
	if err != nil {
		return nil, err
	}
	return &v1.DeleteClusterResponse{Revision: rev}, nil
}

// removeCluster deletes a cluster and everything it owns in one
// transaction.
func (s *Server) removeCluster(ctx context.Context, id string) (int64, error) {
	c, _, err := s.joined(ctx, id)
	if err != nil {
		return 0, err
	}
	ops := []store.Op{
		store.OpDeletePrefix(endpointsOf(id)),
		store.OpDeletePrefix(exportsOf(id)),
		store.OpDelete(heartbeatKey(id)),
		store.OpDelete(clusterKey(id)),
		store.OpPut(keyClusterGuard, []byte(id)),
	}
	if c.GlobalCidr != "" {
		if p, err := netip.ParsePrefix(c.GlobalCidr); err == nil {
			ops = append(ops, store.OpDelete(globalnetKey(p)))
		}
	}
	rev, _, err := s.st.Apply(ctx, ops, nil)
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "remove cluster %s: %v", id, err)
	}
	s.log.Info("cluster removed", "cluster", id, "revision", rev)
	return rev, nil
}

// PutEndpoint implements MemberService.
func (s *Server) PutEndpoint(ctx context.Context, req *v1.PutEndpointRequest) (*v1.PutEndpointResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	ep := req.GetEndpoint()
	if ep == nil {
		return nil, status.Error(codes.InvalidArgument, "endpoint: unset")
	}
	if ep.ClusterId != id {
		return nil, permission(id, "endpoint.cluster_id", ep.ClusterId)
	}
	c, crev, err := s.joined(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := validate.Endpoint(ep, c); err != nil {
		return nil, fieldErrors("endpoint", err)
	}
	raw, err := proto.Marshal(ep)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode: %v", err)
	}
	// The cluster record must be the one validated against.
	rev, ok, err := s.st.Apply(ctx, []store.Op{store.OpPut(endpointKey(id, ep.Gateway), raw)},
		[]store.Cond{store.IfModRevision(clusterKey(id), crev)})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "store endpoint: %v", err)
	}
	if !ok {
		return nil, status.Error(codes.Aborted, "cluster record changed while writing the endpoint; retry")
	}
	return &v1.PutEndpointResponse{Revision: rev}, nil
}

// DeleteEndpoint implements MemberService.
func (s *Server) DeleteEndpoint(ctx context.Context, req *v1.DeleteEndpointRequest) (*v1.DeleteEndpointResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	if req.ClusterId != id {
		return nil, permission(id, "cluster_id", req.ClusterId)
	}
	if req.Gateway == "" || len(req.Gateway) > validate.MaxNameLen {
		return nil, status.Error(codes.InvalidArgument, "gateway: want 1-253 characters")
	}
	rev, _, err := s.st.Delete(ctx, endpointKey(id, req.Gateway))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "delete endpoint: %v", err)
	}
	return &v1.DeleteEndpointResponse{Revision: rev}, nil
}

// PutExport implements MemberService.
func (s *Server) PutExport(ctx context.Context, req *v1.PutExportRequest) (*v1.PutExportResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	x := req.GetExport()
	if x == nil {
		return nil, status.Error(codes.InvalidArgument, "export: unset")
	}
	if x.ClusterId != id {
		return nil, permission(id, "export.cluster_id", x.ClusterId)
	}
	c, crev, err := s.joined(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := validate.ServiceExport(x, c); err != nil {
		return nil, fieldErrors("export", err)
	}
	raw, err := proto.Marshal(x)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode: %v", err)
	}
	rev, ok, err := s.st.Apply(ctx, []store.Op{store.OpPut(exportKey(id, x.Namespace, x.Name), raw)},
		[]store.Cond{store.IfModRevision(clusterKey(id), crev)})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "store export: %v", err)
	}
	if !ok {
		return nil, status.Error(codes.Aborted, "cluster record changed while writing the export; retry")
	}
	return &v1.PutExportResponse{Revision: rev}, nil
}

// DeleteExport implements MemberService.
func (s *Server) DeleteExport(ctx context.Context, req *v1.DeleteExportRequest) (*v1.DeleteExportResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	if req.ClusterId != id {
		return nil, permission(id, "cluster_id", req.ClusterId)
	}
	if len(req.Namespace) == 0 || len(req.Namespace) > 63 || len(req.Name) == 0 || len(req.Name) > 63 {
		return nil, status.Error(codes.InvalidArgument, "namespace/name: want 1-63 characters each")
	}
	rev, _, err := s.st.Delete(ctx, exportKey(id, req.Namespace, req.Name))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "delete export: %v", err)
	}
	return &v1.DeleteExportResponse{Revision: rev}, nil
}

// Heartbeat implements MemberService. A heartbeat from a stale cluster
// makes it fresh again; its gateway then republishes its endpoint.
func (s *Server) Heartbeat(ctx context.Context, _ *v1.HeartbeatRequest) (*v1.HeartbeatResponse, error) {
	id, err := callerCluster(ctx)
	if err != nil {
		return nil, err
	}
	c, crev, err := s.joined(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	ops := []store.Op{store.OpPut(heartbeatKey(id), []byte(now.UTC().Format(timeFormat)))}
	if c.Stale {
		c.Stale = false
		raw, err := proto.Marshal(c)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode: %v", err)
		}
		ops = append(ops, store.OpPut(clusterKey(id), raw))
		s.log.Info("cluster is back", "cluster", id)
	}
	if _, _, err := s.st.Apply(ctx, ops, []store.Cond{store.IfModRevision(clusterKey(id), crev)}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "store heartbeat: %v", err)
	}
	return &v1.HeartbeatResponse{
		ServerTime:  timestamppb.New(now),
		Interval:    durationpb.New(s.o.HeartbeatInterval),
		GracePeriod: durationpb.New(s.o.StaleAfter),
	}, nil
}

// Watch implements MemberService: a snapshot when needed, then every change
// in revision order; a new snapshot when the stream fell behind compaction.
func (s *Server) Watch(req *v1.WatchRequest, stream v1.MemberService_WatchServer) error {
	ctx := stream.Context()
	id, err := callerCluster(ctx)
	if err != nil {
		return err
	}
	if _, _, err := s.joined(ctx, id); err != nil {
		return err
	}
	s.m.streams.Inc()
	defer s.m.streams.Dec()
	from := req.FromRevision
	cur, err := s.st.Revision(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "read revision: %v", err)
	}
	snapshot := from <= 0 || from > cur // ahead of us: the store was replaced
	for {
		if snapshot {
			if from, err = s.sendSnapshot(ctx, stream); err != nil {
				return err
			}
			snapshot = false
		}
		wctx, cancel := context.WithCancel(ctx)
		events, err := s.st.Watch(wctx, prefixRecords, from)
		if err != nil {
			cancel()
			return status.Errorf(codes.Unavailable, "watch: %v", err)
		}
		from, snapshot, err = s.pump(wctx, stream, events, from)
		cancel()
		if err != nil || !snapshot {
			return err
		}
		s.log.Info("watch fell behind compaction; sending a new snapshot", "cluster", id, "from", from)
	}
}

// pump forwards store events to the stream until it ends; it reports the
// last revision sent and whether a new snapshot is needed.
func (s *Server) pump(ctx context.Context, stream v1.MemberService_WatchServer, events <-chan store.Event, from int64) (int64, bool, error) {
	tick := time.NewTicker(s.o.ProgressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return from, false, ctx.Err()
		case <-tick.C:
			if err := stream.Send(&v1.WatchEvent{Type: v1.EventType_EVENT_TYPE_PROGRESS, Revision: from}); err != nil {
				return from, false, err
			}
		case ev, ok := <-events:
			if !ok {
				return from, false, ctx.Err()
			}
			if ev.Type == store.EventError {
				if errors.Is(ev.Err, store.ErrCompacted) {
					return from, true, nil
				}
				return from, false, status.Errorf(codes.Unavailable, "watch: %v", ev.Err)
			}
			out := &v1.WatchEvent{Revision: ev.Revision}
			var err error
			if ev.Type == store.EventDelete {
				out.Type = v1.EventType_EVENT_TYPE_DELETE
				err = deletedRecord(ev.KV.Key, out)
			} else {
				out.Type = v1.EventType_EVENT_TYPE_PUT
				err = decodeRecord(ev.KV.Key, ev.KV.Value, out)
			}
			if err != nil {
				s.log.Warn("skipping undecodable record", "key", ev.KV.Key, "err", err)
				continue
			}
			if err := stream.Send(out); err != nil {
				return from, false, err
			}
			if ev.LastInRevision {
				from = ev.Revision
			}
		}
	}
}

func (s *Server) sendSnapshot(ctx context.Context, stream v1.MemberService_WatchServer) (int64, error) {
	kvs, rev, err := s.st.List(ctx, prefixRecords)
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "snapshot: %v", err)
	}
	if err := stream.Send(&v1.WatchEvent{Type: v1.EventType_EVENT_TYPE_SNAPSHOT_BEGIN, Revision: rev}); err != nil {
		return 0, err
	}
	for _, kv := range kvs {
		ev := &v1.WatchEvent{Type: v1.EventType_EVENT_TYPE_PUT, Revision: kv.ModRevision}
		if err := decodeRecord(kv.Key, kv.Value, ev); err != nil {
			s.log.Warn("skipping undecodable record", "key", kv.Key, "err", err)
			continue
		}
		if err := stream.Send(ev); err != nil {
			return 0, err
		}
	}
	if err := stream.Send(&v1.WatchEvent{Type: v1.EventType_EVENT_TYPE_SNAPSHOT_END, Revision: rev}); err != nil {
		return 0, err
	}
	return rev, nil
}
