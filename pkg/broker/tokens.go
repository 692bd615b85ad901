package broker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/token"
	"github.com/weftnet/weft/pkg/broker/validate"
)

// tokenRecord is a join token as stored: the secret only as its hash.
type tokenRecord struct {
	ID          string    `json:"id"`
	Hash        []byte    `json:"hash"`
	ClusterID   string    `json:"clusterID,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	Uses        uint32    `json:"uses"`
	Used        uint32    `json:"used"`
	Revoked     bool      `json:"revoked,omitempty"`
	Joined      []string  `json:"joined,omitempty"`
}

func (t *tokenRecord) info() *v1.TokenInfo {
	return &v1.TokenInfo{
		Id: t.ID, ClusterId: t.ClusterID, Description: t.Description,
		Created: timestamppb.New(t.Created), Expires: timestamppb.New(t.Expires),
		Uses: t.Uses, Used: t.Used, Revoked: t.Revoked, JoinedClusters: slices.Clone(t.Joined),
	}
}

func pinOf(c *ca.CA) string { return token.Pin(c.Cert()).String() }

// CreateToken implements AdminService.
func (s *Server) CreateToken(ctx context.Context, req *v1.CreateTokenRequest) (*v1.CreateTokenResponse, error) {
	ttl := s.o.DefaultTokenTTL
	if req.Ttl != nil {
		if err := req.Ttl.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
		}
		ttl = req.Ttl.AsDuration()
	}
	if ttl <= 0 || ttl > s.o.MaxTokenTTL {
		return nil, status.Errorf(codes.InvalidArgument, "ttl: %s is outside (0, %s]", ttl, s.o.MaxTokenTTL)
	}
	uses := req.Uses
	if uses == 0 {
		uses = 1
	}
	if uses > 10000 {
		return nil, status.Errorf(codes.InvalidArgument, "uses: %d is more than 10000", uses)
	}
	if req.ClusterId != "" {
		if err := validate.ClusterID(req.ClusterId); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if len(req.Description) > 256 {
		return nil, status.Errorf(codes.InvalidArgument, "description: %d characters, limit 256", len(req.Description))
	}
	now := s.o.Now()
	for attempt := 0; attempt < 5; attempt++ {
		cred, err := token.Generate(rand.Reader)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "generate token: %v", err)
		}
		h := token.HashSecret(cred)
		rec := tokenRecord{
			ID: cred.ID, Hash: h[:], ClusterID: req.ClusterId, Description: req.Description,
			Created: now, Expires: now.Add(ttl), Uses: uses,
		}
		raw, _ := json.Marshal(rec)
		_, created, err := s.st.Create(ctx, tokenKey(cred.ID), raw)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "store token: %v", err)
		}
		if !created {
			continue // id collision: draw again
		}
		pin, err := token.ParseKeyPin(s.Pin())
		if err != nil {
			return nil, status.Errorf(codes.Internal, "pin: %v", err)
		}
		str, err := token.Token{Addresses: s.o.Addresses, CAPin: pin, Credential: cred}.Encode()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode token: %v", err)
		}
		s.m.token("created")
		s.log.Info("token created", "id", cred.ID, "cluster_id", req.ClusterId, "uses", uses, "expires", rec.Expires)
		return &v1.CreateTokenResponse{Token: str, Id: cred.ID, Expires: timestamppb.New(rec.Expires)}, nil
	}
	return nil, status.Error(codes.Internal, "could not draw an unused token id")
}

// ListTokens implements AdminService.
func (s *Server) ListTokens(ctx context.Context, _ *v1.ListTokensRequest) (*v1.ListTokensResponse, error) {
	kvs, _, err := s.st.List(ctx, prefixTokens)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list tokens: %v", err)
	}
	resp := &v1.ListTokensResponse{}
	for _, kv := range kvs {
		var t tokenRecord
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			s.log.Warn("skipping undecodable token record", "key", kv.Key, "err", err)
			continue
		}
		resp.Tokens = append(resp.Tokens, t.info())
	}
	return resp, nil
}

// RevokeToken implements AdminService.
func (s *Server) RevokeToken(ctx context.Context, req *v1.RevokeTokenRequest) (*v1.RevokeTokenResponse, error) {
	if err := token.ValidateID(req.Id); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "id: %v", err)
	}
	for attempt := 0; attempt < 10; attempt++ {
		kv, found, err := s.st.Get(ctx, tokenKey(req.Id))
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "read token: %v", err)
		}
		if !found {
			return nil, status.Errorf(codes.NotFound, "token %s not found", req.Id)
		}
		var t tokenRecord
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return nil, status.Errorf(codes.Internal, "token %s: %v", req.Id, err)
		}
		t.Revoked = true
		raw, _ := json.Marshal(t)
		if _, ok, err := s.st.CompareAndSwap(ctx, tokenKey(req.Id), raw, kv.ModRevision); err != nil {
			return nil, status.Errorf(codes.Unavailable, "revoke token: %v", err)
		} else if ok {
			s.m.token("revoked")
			s.log.Info("token revoked", "id", req.Id)
			return &v1.RevokeTokenResponse{}, nil
		}
	}
	return nil, status.Error(codes.Aborted, "token changed concurrently; retry")
}

// errBadToken is the one answer for unknown, expired, revoked and used-up
// tokens and wrong secrets: a guesser learns nothing from it.
var errBadToken = status.Error(codes.Unauthenticated, "join token is unknown, expired, revoked or used up")

// checkToken verifies the credential against the stored record and says
// why it fails (for metrics and logs only; the caller always sees
// errBadToken).
func (s *Server) checkToken(rec *tokenRecord, cred token.Credential) (outcome string, err error) {
	var h token.SecretHash
	if len(rec.Hash) != len(h) {
		return "corrupt", errBadToken
	}
	copy(h[:], rec.Hash)
	if !token.VerifySecret(cred, h[:]) {
		return "wrong_secret", errBadToken
	}
	switch {
	case rec.Revoked:
		return "revoked", errBadToken
	case !s.o.Now().Before(rec.Expires):
		return "expired", errBadToken
	case rec.Used >= rec.Uses:
		return "exhausted", errBadToken
	}
	return "ok", nil
}

var errRetry = errors.New("concurrent change; retry")

func fieldErrors(prefix string, err error) error {
	if es, ok := validate.AsErrors(err); ok {
		if prefix != "" {
			es = es.WithPrefix(prefix)
		}
		return status.Error(codes.InvalidArgument, es.Error())
	}
	return status.Error(codes.InvalidArgument, fmt.Sprintf("%s: %v", prefix, err))
}
