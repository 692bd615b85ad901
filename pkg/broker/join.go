package broker

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/store"
	"github.com/weftnet/weft/pkg/broker/token"
	"github.com/weftnet/weft/pkg/broker/validate"
)

// clusterView is a consistent read of all cluster records plus the guard
// revision that a write must still see to commit.
type clusterView struct {
	clusters []*v1.Cluster
	guardRev int64
	slices   []netip.Prefix // allocated global slices
}

func (v *clusterView) get(id string) *v1.Cluster {
	for _, c := range v.clusters {
		if c.Id == id {
			return c
		}
	}
	return nil
}

func (v *clusterView) others(id string) []*v1.Cluster {
	out := make([]*v1.Cluster, 0, len(v.clusters))
	for _, c := range v.clusters {
		if c.Id != id {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) readClusters(ctx context.Context) (*clusterView, error) {
	guard, _, err := s.st.Get(ctx, keyClusterGuard)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read cluster guard: %v", err)
	}
	kvs, _, err := s.st.List(ctx, prefixClusters)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list clusters: %v", err)
	}
	v := &clusterView{guardRev: guard.ModRevision}
	for _, kv := range kvs {
		var c v1.Cluster
		if err := proto.Unmarshal(kv.Value, &c); err != nil {
			s.log.Warn("skipping undecodable cluster record", "key", kv.Key, "err", err)
			continue
		}
		v.clusters = append(v.clusters, &c)
	}
	gkvs, _, err := s.st.List(ctx, prefixGlobalnet)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list globalnet: %v", err)
	}
	for _, kv := range gkvs {
		if p, err := netip.ParsePrefix(strings.ReplaceAll(strings.TrimPrefix(kv.Key, prefixGlobalnet), "_", "/")); err == nil {
			v.slices = append(v.slices, p)
		}
	}
	return v, nil
}

// Join implements JoinService.
func (s *Server) Join(ctx context.Context, req *v1.JoinRequest) (*v1.JoinResponse, error) {
	host := peerHost(ctx)
	if !s.limiter.allow(host) {
		s.m.token("rate_limited")
		return nil, status.Errorf(codes.ResourceExhausted, "too many join attempts from %s; retry later", host)
	}
	if err := token.ValidateID(req.TokenId); err != nil {
		s.m.token("malformed")
		return nil, status.Errorf(codes.InvalidArgument, "token_id: %v", err)
	}
	secret, err := token.SecretFromBytes(req.TokenSecret)
	if err != nil {
		s.m.token("malformed")
		return nil, status.Errorf(codes.InvalidArgument, "token_secret: %v", err)
	}
	cred := token.Credential{ID: req.TokenId, Secret: secret}
	if req.Cluster == nil {
		return nil, status.Error(codes.InvalidArgument, "cluster: unset")
	}
	id := req.Cluster.Id
	// Cluster writes are checked against all clusters under one guard key;
	// serialize them within this replica so only other replicas can make
	// a commit retry, and back off between retries.
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	for attempt := 0; attempt < 20; attempt++ {
		resp, err := s.tryJoin(ctx, cred, req, host)
		if errors.Is(err, errRetry) {
			if err := retryPause(ctx, attempt); err != nil {
				return nil, status.FromContextError(err).Err()
			}
			continue
		}
		if err == nil {
			s.log.Info("cluster joined", "cluster", id, "token", req.TokenId, "global_cidr", resp.GlobalCidr, "from", host)
		}
		return resp, err
	}
	return nil, status.Error(codes.Aborted, "too much concurrent change; retry the join")
}

func (s *Server) tryJoin(ctx context.Context, cred token.Credential, req *v1.JoinRequest, host string) (*v1.JoinResponse, error) {
	kv, found, err := s.st.Get(ctx, tokenKey(cred.ID))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read token: %v", err)
	}
	if !found {
		s.m.token("unknown")
		s.log.Warn("join refused", "reason", "unknown token", "token", cred.ID, "from", host)
		return nil, errBadToken
	}
	var rec tokenRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return nil, status.Errorf(codes.Internal, "token %s: %v", cred.ID, err)
	}
	if outcome, err := s.checkToken(&rec, cred); err != nil {
		s.m.token(outcome)
		s.log.Warn("join refused", "reason", outcome, "token", cred.ID, "from", host)
		return nil, err
	}
	ci := req.Cluster
	if rec.ClusterID != "" && rec.ClusterID != ci.Id {
		s.m.token("wrong_cluster")
		return nil, status.Errorf(codes.PermissionDenied, "cluster.id: token %s is bound to cluster %q, not %q", cred.ID, rec.ClusterID, ci.Id)
	}
	view, err := s.readClusters(ctx)
	if err != nil {
		return nil, err
	}
	existing := view.get(ci.Id)
	if existing != nil && rec.ClusterID != ci.Id {
		return nil, status.Errorf(codes.AlreadyExists,
			"cluster.id: cluster %q has already joined; re-joining needs a token bound to it (weftctl token create --cluster-id %s)", ci.Id, ci.Id)
	}
	others := view.others(ci.Id)
	if err := validate.ClusterInfo(ci, others); err != nil {
		return nil, fieldErrors("cluster", err)
	}
	now := s.o.Now()
	cl := &v1.Cluster{
		Id: ci.Id, PodCidrs: ci.PodCidrs, ServiceCidrs: ci.ServiceCidrs,
		Globalnet: ci.WantsGlobalnet, Joined: timestamppb.New(now),
	}
	var newSlice netip.Prefix
	if existing != nil {
		cl.Joined = existing.Joined
		if existing.Globalnet && ci.WantsGlobalnet {
			cl.GlobalCidr = existing.GlobalCidr
		}
	}
	if cl.Globalnet && cl.GlobalCidr == "" {
		taken := slices.Clone(view.slices)
		for _, o := range others {
			for _, c := range append(append(slices.Clone(o.PodCidrs), o.ServiceCidrs...), o.GlobalCidr) {
				if p, err := netip.ParsePrefix(c); err == nil {
					taken = append(taken, p)
				}
			}
		}
		newSlice, err = s.alloc.Allocate(taken)
		if err != nil {
			return nil, status.Errorf(codes.ResourceExhausted, "global_cidr: %v", err)
		}
		cl.GlobalCidr = newSlice.String()
	}
	if err := validate.Cluster(cl, others); err != nil {
		return nil, fieldErrors("cluster", err)
	}
	// Sign before committing: a bad CSR fails here and consumes nothing.
	certPEM, err := s.ca.SignClient(req.CsrPem, ca.Identity{Kind: ca.KindCluster, Name: ci.Id}, s.o.ClientCertValidity, now)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr_pem: %v", err)
	}
	rec.Used++
	rec.Joined = append(rec.Joined, ci.Id)
	recRaw, _ := json.Marshal(rec)
	clRaw, err := proto.Marshal(cl)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode cluster: %v", err)
	}
	ops := []store.Op{
		store.OpPut(tokenKey(cred.ID), recRaw),
		store.OpPut(clusterKey(ci.Id), clRaw),
		store.OpPut(keyClusterGuard, []byte(ci.Id)),
		store.OpPut(heartbeatKey(ci.Id), []byte(now.UTC().Format(timeFormat))),
	}
	if newSlice.IsValid() {
		ops = append(ops, store.OpCreate(globalnetKey(newSlice), []byte(ci.Id)))
	}
	if existing != nil && existing.GlobalCidr != "" && cl.GlobalCidr == "" {
		if p, err := netip.ParsePrefix(existing.GlobalCidr); err == nil {
			ops = append(ops, store.OpDelete(globalnetKey(p)))
		}
	}
	conds := []store.Cond{
		store.IfModRevision(tokenKey(cred.ID), kv.ModRevision),
		store.IfModRevision(keyClusterGuard, view.guardRev),
	}
	if existing == nil {
		conds = append(conds, store.IfAbsent(clusterKey(ci.Id)))
	}
	_, ok, err := s.st.Apply(ctx, ops, conds)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "store join: %v", err)
	}
	if !ok {
		return nil, errRetry
	}
	s.m.token("joined")
	return &v1.JoinResponse{CertificatePem: certPEM, CaPem: s.ca.CertPEM(), GlobalCidr: cl.GlobalCidr, Cluster: cl}, nil
}

// retryPause waits a little, more with every attempt, with jitter.
func retryPause(ctx context.Context, attempt int) error {
	d := time.Duration(1+rand.IntN(5*(attempt+1))) * time.Millisecond
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func permission(caller, what, owner string) error {
	return status.Errorf(codes.PermissionDenied, "%s: cluster %q may not write records of cluster %q", what, caller, owner)
}

// joined returns the caller's cluster record, or an error when the caller
// is not (or no longer) a member.
func (s *Server) joined(ctx context.Context, id string) (*v1.Cluster, int64, error) {
	kv, found, err := s.st.Get(ctx, clusterKey(id))
	if err != nil {
		return nil, 0, status.Errorf(codes.Unavailable, "read cluster %s: %v", id, err)
	}
	if !found {
		return nil, 0, status.Errorf(codes.PermissionDenied, "cluster %q is not a member (evicted or left); join again with a new token", id)
	}
	var c v1.Cluster
	if err := proto.Unmarshal(kv.Value, &c); err != nil {
		return nil, 0, status.Errorf(codes.Internal, "cluster %s: %v", id, err)
	}
	return &c, kv.ModRevision, nil
}
