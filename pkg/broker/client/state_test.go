package client

import (
	"crypto/x509"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
)

func cluster(id, pod, svc string) *v1.Cluster {
	return &v1.Cluster{Id: id, PodCidrs: []string{pod}, ServiceCidrs: []string{svc}}
}

func endpoint(id, gw string, subnets ...string) *v1.Endpoint {
	key := make([]byte, 32)
	key[0] = 1
	copy(key[1:], id)
	return &v1.Endpoint{ClusterId: id, Gateway: gw, PublicKey: key, PrivateIp: "198.19.1.11", Port: 51820, Subnets: subnets}
}

func export(id, name, ip string) *v1.ServiceExport {
	return &v1.ServiceExport{
		ClusterId: id, Namespace: "default", Name: name, Type: v1.ServiceType_SERVICE_TYPE_CLUSTER_SET_IP,
		Ports:   []*v1.ServicePort{{Name: "http", Protocol: v1.Protocol_PROTOCOL_TCP, Port: 80}},
		Ips:     []string{ip},
		Created: timestamppb.New(time.Unix(1700000000, 0)),
	}
}

func put(rec any) *v1.WatchEvent { return event(v1.EventType_EVENT_TYPE_PUT, rec) }
func del(rec any) *v1.WatchEvent { return event(v1.EventType_EVENT_TYPE_DELETE, rec) }

func event(t v1.EventType, rec any) *v1.WatchEvent {
	ev := &v1.WatchEvent{Type: t}
	switch r := rec.(type) {
	case *v1.Cluster:
		ev.Record = &v1.WatchEvent_Cluster{Cluster: r}
	case *v1.Endpoint:
		ev.Record = &v1.WatchEvent_Endpoint{Endpoint: r}
	case *v1.ServiceExport:
		ev.Record = &v1.WatchEvent_Export{Export: r}
	}
	return ev
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func wantKeys[V any](t *testing.T, what string, m map[string]V, want ...string) {
	t.Helper()
	if got := keys(m); !slices.Equal(got, want) {
		t.Fatalf("%s: %q, want %q", what, got, want)
	}
}

// TestStateKeepsInvalidRecordsOut feeds hand-built events of the kind a
// compromised or buggy broker could send: they never enter the State's
// record maps, and are listed in Rejected with the reason.
func TestStateKeepsInvalidRecordsOut(t *testing.T) {
	s := newState()
	s.apply(put(cluster("c1", "10.1.0.0/16", "10.101.0.0/16")))
	s.apply(put(endpoint("c1", "gw-good", "10.1.0.0/16", "10.101.0.0/16")))
	// Subnets outside c1's CIDRs (another cluster's range, and everything).
	s.apply(put(endpoint("c1", "gw-foreign", "10.2.0.0/16")))
	s.apply(put(endpoint("c1", "gw-default", "0.0.0.0/0")))
	s.apply(put(export("c1", "web", "10.101.0.10")))
	s.apply(put(export("c1", "evil", "10.2.0.10")))
	// An invalid cluster record (a default route) and its endpoint.
	s.apply(put(cluster("c3", "0.0.0.0/0", "10.103.0.0/16")))
	s.apply(put(endpoint("c3", "gw", "10.3.0.0/16")))

	wantKeys(t, "clusters", s.Clusters, "c1")
	wantKeys(t, "endpoints", s.Endpoints, "c1/gw-good")
	wantKeys(t, "exports", s.Exports, "c1/default/web")
	wantKeys(t, "rejected", s.Rejected, "cluster/c3", "endpoint/c1/gw-default", "endpoint/c1/gw-foreign", "endpoint/c3/gw", "export/c1/default/evil")
	if r := s.Rejected["endpoint/c1/gw-foreign"]; !strings.Contains(r, "subnets[0]") || !strings.Contains(r, `cluster "c1"`) {
		t.Fatalf("rejection reason %q does not name the field and the cluster", r)
	}
	valid, rejected := s.ValidEndpoints()
	if len(valid) != 1 || valid[0].Gateway != "gw-good" || len(rejected) != 0 {
		t.Fatalf("ValidEndpoints = %v, %v; want only gw-good", valid, rejected)
	}

	// Copies handed out are independent of the state.
	c := s.clone()
	s.apply(del(endpoint("c1", "gw-good")))
	if _, ok := c.Endpoints["c1/gw-good"]; !ok {
		t.Fatal("clone changed with the original")
	}
	wantKeys(t, "endpoints after delete", s.Endpoints)

	// A delete clears the rejection.
	s.apply(del(endpoint("c1", "gw-foreign")))
	if _, ok := s.Rejected["endpoint/c1/gw-foreign"]; ok {
		t.Fatal("deleted record still listed as rejected")
	}
}

// TestStateRevalidatesOnClusterChange: records are judged against the
// cluster record current when either arrives.
func TestStateRevalidatesOnClusterChange(t *testing.T) {
	s := newState()
	// Before its cluster: rejected, but remembered.
	s.apply(put(endpoint("c2", "gw", "10.2.0.0/16")))
	wantKeys(t, "endpoints before the cluster", s.Endpoints)
	wantKeys(t, "rejected before the cluster", s.Rejected, "endpoint/c2/gw")
	s.apply(put(cluster("c2", "10.2.0.0/16", "10.102.0.0/16")))
	wantKeys(t, "endpoints with the cluster", s.Endpoints, "c2/gw")
	wantKeys(t, "rejected with the cluster", s.Rejected)

	// The cluster moves to other CIDRs: its old endpoint no longer fits.
	s.apply(put(cluster("c2", "10.22.0.0/16", "10.122.0.0/16")))
	wantKeys(t, "endpoints after the CIDR change", s.Endpoints)
	wantKeys(t, "rejected after the CIDR change", s.Rejected, "endpoint/c2/gw")
	s.apply(put(endpoint("c2", "gw", "10.22.0.0/16")))
	wantKeys(t, "endpoints after the new endpoint", s.Endpoints, "c2/gw")

	// The cluster goes: so does the validity of what it owned.
	s.apply(del(cluster("c2", "", "")))
	wantKeys(t, "clusters after delete", s.Clusters)
	wantKeys(t, "endpoints after the cluster delete", s.Endpoints)
	s.apply(del(endpoint("c2", "gw")))
	wantKeys(t, "rejected at the end", s.Rejected)

	// Malformed events change nothing.
	s.apply(&v1.WatchEvent{Type: v1.EventType_EVENT_TYPE_PUT, Record: &v1.WatchEvent_Endpoint{}})
	s.apply(&v1.WatchEvent{Type: v1.EventType_EVENT_TYPE_PUT})
	if len(s.Endpoints)+len(s.Rejected)+len(s.rcvEndpoints) != 0 {
		t.Fatalf("malformed events changed the state: %+v", s)
	}
}

func TestRenewAt(t *testing.T) {
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(30 * time.Hour)}
	if got, want := RenewAt(cert), nb.Add(20*time.Hour); !got.Equal(want) {
		t.Fatalf("RenewAt = %v, want %v (two thirds in)", got, want)
	}
}
