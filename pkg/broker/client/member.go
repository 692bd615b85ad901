package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/validate"
)

// State is the member's view of the clusterset: every record it received,
// at Revision. Records that fail validation on receipt (defence in depth:
// an endpoint or export is checked against its cluster's record, as the
// broker does) are kept out of Clusters, Endpoints and Exports and listed
// in Rejected instead. They are remembered, so a later cluster record
// under which they validate brings them in (and one under which they no
// longer do takes them out).
type State struct {
	Revision  int64
	Clusters  map[string]*v1.Cluster
	Endpoints map[string]*v1.Endpoint      // key: cluster/gateway
	Exports   map[string]*v1.ServiceExport // key: cluster/namespace/name
	Rejected  map[string]string            // record key ("endpoint/c1/gw") -> reason

	// Every endpoint and export received, valid or not, by the same keys:
	// what the broker holds.
	rcvEndpoints map[string]*v1.Endpoint
	rcvExports   map[string]*v1.ServiceExport
}

func newState() *State {
	return &State{
		Clusters: map[string]*v1.Cluster{}, Endpoints: map[string]*v1.Endpoint{},
		Exports: map[string]*v1.ServiceExport{}, Rejected: map[string]string{},
		rcvEndpoints: map[string]*v1.Endpoint{}, rcvExports: map[string]*v1.ServiceExport{},
	}
}

func (s *State) clone() *State {
	c := newState()
	c.Revision = s.Revision
	maps.Copy(c.Clusters, s.Clusters)
	maps.Copy(c.Endpoints, s.Endpoints)
	maps.Copy(c.Exports, s.Exports)
	maps.Copy(c.Rejected, s.Rejected)
	maps.Copy(c.rcvEndpoints, s.rcvEndpoints)
	maps.Copy(c.rcvExports, s.rcvExports)
	return c
}

// apply folds one event into the state.
func (s *State) apply(ev *v1.WatchEvent) {
	del := ev.Type == v1.EventType_EVENT_TYPE_DELETE
	switch r := ev.Record.(type) {
	case *v1.WatchEvent_Cluster:
		if r.Cluster == nil {
			return // malformed event
		}
		id := r.Cluster.Id
		delete(s.Rejected, "cluster/"+id)
		if del {
			delete(s.Clusters, id)
		} else if err := validate.Cluster(r.Cluster, nil); err != nil {
			s.Rejected["cluster/"+id] = err.Error()
			delete(s.Clusters, id)
		} else {
			s.Clusters[id] = r.Cluster
		}
		// The cluster's records are valid or not against this record.
		for k, ep := range s.rcvEndpoints {
			if ep.ClusterId == id {
				s.checkEndpoint(k)
			}
		}
		for k, x := range s.rcvExports {
			if x.ClusterId == id {
				s.checkExport(k)
			}
		}
	case *v1.WatchEvent_Endpoint:
		if r.Endpoint == nil {
			return // malformed event
		}
		k := r.Endpoint.ClusterId + "/" + r.Endpoint.Gateway
		if del {
			delete(s.rcvEndpoints, k)
			delete(s.Endpoints, k)
			delete(s.Rejected, "endpoint/"+k)
			return
		}
		s.rcvEndpoints[k] = r.Endpoint
		s.checkEndpoint(k)
	case *v1.WatchEvent_Export:
		if r.Export == nil {
			return // malformed event
		}
		k := r.Export.ClusterId + "/" + r.Export.Namespace + "/" + r.Export.Name
		if del {
			delete(s.rcvExports, k)
			delete(s.Exports, k)
			delete(s.Rejected, "export/"+k)
			return
		}
		s.rcvExports[k] = r.Export
		s.checkExport(k)
	}
}

// checkEndpoint (re)validates the received endpoint k against its
// cluster's current record.
func (s *State) checkEndpoint(k string) {
	ep := s.rcvEndpoints[k]
	if err := validate.Endpoint(ep, s.Clusters[ep.ClusterId]); err != nil {
		delete(s.Endpoints, k)
		s.Rejected["endpoint/"+k] = err.Error()
		return
	}
	s.Endpoints[k] = ep
	delete(s.Rejected, "endpoint/"+k)
}

// checkExport (re)validates the received export k against its cluster's
// current record.
func (s *State) checkExport(k string) {
	x := s.rcvExports[k]
	if err := validate.ServiceExport(x, s.Clusters[x.ClusterId]); err != nil {
		delete(s.Exports, k)
		s.Rejected["export/"+k] = err.Error()
		return
	}
	s.Exports[k] = x
	delete(s.Rejected, "export/"+k)
}

// ValidEndpoints returns the endpoints that validate against their
// cluster's record, sorted by cluster and gateway; the others are reported
// with the reason. (Endpoints holds only records that validated when they
// or their cluster's record arrived; this checks again.)
func (s *State) ValidEndpoints() (valid []*v1.Endpoint, rejected map[string]string) {
	rejected = map[string]string{}
	for k, ep := range s.Endpoints {
		c, ok := s.Clusters[ep.ClusterId]
		if !ok {
			rejected[k] = "no cluster record"
			continue
		}
		if err := validate.Endpoint(ep, c); err != nil {
			rejected[k] = err.Error()
			continue
		}
		valid = append(valid, ep)
	}
	slices.SortFunc(valid, func(a, b *v1.Endpoint) int {
		return cmp.Or(strings.Compare(a.ClusterId, b.ClusterId), strings.Compare(a.Gateway, b.Gateway))
	})
	return valid, rejected
}

// MemberOptions configure a Member.
type MemberOptions struct {
	Credentials *Credentials
	Logger      *slog.Logger
	// HeartbeatInterval until the broker says otherwise (default 10 s).
	HeartbeatInterval time.Duration
	// MinBackoff and MaxBackoff bound reconnect delays (default 200 ms,
	// 5 s: a retry is one TLS handshake, and members should resync soon
	// after the broker returns).
	MinBackoff, MaxBackoff time.Duration
	// DialOptions are added to every connection (tests use them).
	DialOptions []grpc.DialOption
	// OnRenew, when set, receives the new credentials after the member
	// renewed its certificate (see Member), so they can be persisted; the
	// member uses them for its next connections either way. It is called
	// from Run's goroutines and should not block for long.
	OnRenew func(*Credentials)
	// Now is the clock certificate renewal is decided by; nil means
	// time.Now.
	Now func() time.Time
}

// Member keeps a connection to the broker: it publishes the cluster's own
// records (and republishes them after reconnects or staleness), sends
// heartbeats, and mirrors everybody's records into a local State.
//
// It also renews its client certificate: at the start of every session
// and after every heartbeat it checks the current certificate, and when
// less than a third of its validity (NotBefore to NotAfter) is left it
// sends a new key's CSR to MemberService.RenewCertificate, uses the new
// key and certificate for its next connections, and passes them to
// MemberOptions.OnRenew.
type Member struct {
	o   MemberOptions
	log *slog.Logger

	mu         sync.Mutex
	creds      *Credentials // current; replaced on renewal
	renewPause time.Time    // no renewal attempt before this (after a failed or useless one)
	state      *State
	own        map[string]proto.Message // desired own records by key
	connected  bool
	notify     chan struct{}
	syncReq    chan struct{}
	addrIdx    int
	lastSeen   int64 // highest revision received; complete once a higher one arrives
}

// NewMember returns a Member; Run starts it.
func NewMember(o MemberOptions) (*Member, error) {
	if o.Credentials == nil {
		return nil, errors.New("member: credentials: unset")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 10 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Credentials.Addresses) == 0 {
		return nil, errors.New("member: credentials: addresses: empty")
	}
	return &Member{o: o, log: o.Logger, creds: o.Credentials.clone(), state: newState(), own: map[string]proto.Message{},
		notify: make(chan struct{}, 1), syncReq: make(chan struct{}, 1)}, nil
}

// State returns a copy of the current view.
func (m *Member) State() *State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.clone()
}

// Credentials returns a copy of the credentials the member currently uses
// (the ones it was given, or the latest renewed ones).
func (m *Member) Credentials() *Credentials {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.creds.clone()
}

// Connected reports whether the watch stream is up.
func (m *Member) Connected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connected
}

// Changed is signalled (coalesced) whenever the State changes.
func (m *Member) Changed() <-chan struct{} { return m.notify }

func (m *Member) signal() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// PublishEndpoint sets the endpoint this cluster wants published; it is
// written now if connected and again after every reconnect.
func (m *Member) PublishEndpoint(ep *v1.Endpoint) { m.setOwn("endpoint/"+ep.Gateway, ep) }

// PublishExport sets a service export to publish.
func (m *Member) PublishExport(x *v1.ServiceExport) {
	m.setOwn("export/"+x.Namespace+"/"+x.Name, x)
}

// WithdrawEndpoint removes an own endpoint from the desired set; the
// broker copy is deleted by the next sync.
func (m *Member) WithdrawEndpoint(gateway string) { m.withdraw("endpoint/" + gateway) }

// WithdrawExport removes an own service export from the desired set.
func (m *Member) WithdrawExport(namespace, name string) {
	m.withdraw("export/" + namespace + "/" + name)
}

func (m *Member) withdraw(k string) {
	m.mu.Lock()
	m.own[k] = nil
	m.mu.Unlock()
	m.signalSync()
}

func (m *Member) setOwn(k string, msg proto.Message) {
	m.mu.Lock()
	m.own[k] = proto.Clone(msg)
	m.mu.Unlock()
	m.signalSync()
}

func (m *Member) signalSync() {
	select {
	case m.syncReq <- struct{}{}:
	default:
	}
}

// Run connects and keeps the member in sync until ctx ends. Broker outages
// only delay: the State keeps the last known records.
func (m *Member) Run(ctx context.Context) error {
	backoff := m.o.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := m.session(ctx)
		m.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 10*time.Second {
			backoff = m.o.MinBackoff // it worked for a while: start over
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		m.log.Warn("broker connection lost; retrying", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, m.o.MaxBackoff)
		m.mu.Lock()
		m.addrIdx = (m.addrIdx + 1) % len(m.creds.Addresses)
		m.mu.Unlock()
	}
	return nil
}

func (m *Member) setConnected(v bool) {
	m.mu.Lock()
	changed := m.connected != v
	m.connected = v
	m.mu.Unlock()
	if changed {
		m.signal()
	}
}

// session runs one connection: watch, heartbeats, own-record sync.
func (m *Member) session(ctx context.Context) error {
	m.mu.Lock()
	creds := m.creds
	addr := creds.Addresses[m.addrIdx%len(creds.Addresses)]
	m.mu.Unlock()
	conn, err := Dial(creds, addr, m.o.DialOptions...)
	if err != nil {
		return err
	}
	defer conn.Close()
	cli := v1.NewMemberServiceClient(conn)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.mu.Lock()
	from := m.state.Revision
	m.mu.Unlock()
	stream, err := cli.Watch(sctx, &v1.WatchRequest{FromRevision: from}, grpc.WaitForReady(false))
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- m.heartbeats(sctx, cli) }()
	go func() { errc <- m.readStream(stream) }()
	// Publish own records once the stream is up.
	if err := m.syncOwn(sctx, cli); err != nil {
		return err
	}
	m.setConnected(true)
	m.log.Info("connected to broker", "address", addr, "from_revision", from)
	return <-errc
}

func (m *Member) heartbeats(ctx context.Context, cli v1.MemberServiceClient) error {
	interval := m.o.HeartbeatInterval
	for {
		resp, err := cli.Heartbeat(ctx, &v1.HeartbeatRequest{})
		if err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		if d := resp.GetInterval().AsDuration(); d > 0 {
			interval = d
		}
		m.renewIfDue(ctx, cli)
		next := time.After(interval)
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-m.syncReq:
				if err := m.syncOwn(ctx, cli); err != nil {
					return err
				}
			case <-next:
				break wait
			}
		}
		// Endpoints are withdrawn while a cluster is stale: put them back.
		if err := m.syncOwn(ctx, cli); err != nil {
			return err
		}
	}
}

// syncOwn writes the desired own records that the broker lacks or has
// differently, and deletes withdrawn ones.
func (m *Member) syncOwn(ctx context.Context, cli v1.MemberServiceClient) error {
	m.mu.Lock()
	id := m.creds.ClusterID
	own := make(map[string]proto.Message, len(m.own))
	for k, v := range m.own {
		own[k] = v
	}
	have := m.state.clone()
	m.mu.Unlock()
	for k, msg := range own {
		var err error
		switch r := msg.(type) {
		case *v1.Endpoint:
			if cur, ok := have.rcvEndpoints[id+"/"+r.Gateway]; ok && proto.Equal(cur, r) {
				continue
			}
			_, err = cli.PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: r})
		case *v1.ServiceExport:
			if cur, ok := have.rcvExports[id+"/"+r.Namespace+"/"+r.Name]; ok && proto.Equal(cur, r) {
				continue
			}
			_, err = cli.PutExport(ctx, &v1.PutExportRequest{Export: r})
		case nil:
			err = m.deleteOwn(ctx, cli, id, k)
			if err == nil {
				m.mu.Lock()
				if m.own[k] == nil {
					delete(m.own, k)
				}
				m.mu.Unlock()
			}
		}
		if err != nil {
			if status.Code(err) == codes.InvalidArgument || status.Code(err) == codes.PermissionDenied {
				// The broker refuses this record: retrying will not help.
				m.log.Error("broker refused own record", "record", k, "err", err)
				continue
			}
			return fmt.Errorf("publish %s: %w", k, err)
		}
	}
	return nil
}

func (m *Member) deleteOwn(ctx context.Context, cli v1.MemberServiceClient, id, k string) error {
	kind, rest, _ := strings.Cut(k, "/")
	switch kind {
	case "endpoint":
		_, err := cli.DeleteEndpoint(ctx, &v1.DeleteEndpointRequest{ClusterId: id, Gateway: rest})
		return err
	case "export":
		ns, name, _ := strings.Cut(rest, "/")
		_, err := cli.DeleteExport(ctx, &v1.DeleteExportRequest{ClusterId: id, Namespace: ns, Name: name})
		return err
	}
	return fmt.Errorf("withdraw %q: unknown record kind", k) // keys are made only by this file
}

// readStream folds watch events into the state. A snapshot is staged and
// swapped in whole at SNAPSHOT_END, so readers never see half of one.
func (m *Member) readStream(stream v1.MemberService_WatchClient) error {
	var staged *State
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return errors.New("watch stream closed by the broker")
		}
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		switch ev.Type {
		case v1.EventType_EVENT_TYPE_SNAPSHOT_BEGIN:
			staged = newState()
			continue
		case v1.EventType_EVENT_TYPE_SNAPSHOT_END:
			if staged == nil {
				return errors.New("watch: SNAPSHOT_END without SNAPSHOT_BEGIN")
			}
			staged.Revision = ev.Revision
			m.mu.Lock()
			m.state = staged
			m.lastSeen = ev.Revision
			m.connected = true
			m.mu.Unlock()
			staged = nil
			m.signal()
			continue
		case v1.EventType_EVENT_TYPE_PROGRESS:
			m.mu.Lock()
			if ev.Revision > m.state.Revision {
				m.state.Revision = ev.Revision
			}
			m.mu.Unlock()
			continue
		}
		if staged != nil {
			staged.apply(ev)
			continue
		}
		m.mu.Lock()
		m.state.apply(ev)
		// One revision may span several events (a transaction); it is
		// complete, and safe to resume after, once a later one arrives.
		if ev.Revision > m.lastSeen {
			if m.lastSeen > m.state.Revision {
				m.state.Revision = m.lastSeen
			}
			m.lastSeen = ev.Revision
		}
		m.mu.Unlock()
		m.signal()
	}
}
