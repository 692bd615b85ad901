package validate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
)

func validExport() *pb.ServiceExport {
	return &pb.ServiceExport{
		ClusterId: "east",
		Namespace: "default",
		Name:      "nginx",
		Type:      pb.ServiceType_SERVICE_TYPE_CLUSTER_SET_IP,
		Ports: []*pb.ServicePort{
			{Name: "http", Protocol: pb.Protocol_PROTOCOL_TCP, Port: 80, AppProtocol: "http"},
			{Name: "dns", Protocol: pb.Protocol_PROTOCOL_UDP, Port: 53},
		},
		Ips:     []string{"10.101.0.10"},
		Created: timestamppb.New(time.Unix(1700000000, 0)),
	}
}

func validHeadless() *pb.ServiceExport {
	return &pb.ServiceExport{
		ClusterId: "east",
		Namespace: "db",
		Name:      "pg",
		Type:      pb.ServiceType_SERVICE_TYPE_HEADLESS,
		Endpoints: []*pb.ExportEndpoint{
			{Hostname: "pg-0", Ips: []string{"10.1.0.5"}},
			{Hostname: "pg-1", Ips: []string{"10.1.0.6"}},
			{Ips: []string{"10.1.0.7"}},
		},
		Created: timestamppb.New(time.Unix(1700000000, 0)),
	}
}

func TestServiceExport(t *testing.T) {
	tests := []struct {
		name     string
		base     func() *pb.ServiceExport
		mod      func(se *pb.ServiceExport)
		cluster  *pb.Cluster
		noCluser bool
		want     []string
	}{
		{name: "valid", base: validExport, mod: func(*pb.ServiceExport) {}},
		{name: "valid headless", base: validHeadless, mod: func(*pb.ServiceExport) {}},
		{name: "valid headless with ports", base: validHeadless, mod: func(se *pb.ServiceExport) {
			se.Ports = []*pb.ServicePort{{Protocol: pb.Protocol_PROTOCOL_TCP, Port: 5432, AppProtocol: "example.com/pg-wire"}}
		}},
		{name: "valid single unnamed port", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports = se.Ports[:1]; se.Ports[0].Name = "" }},
		{name: "valid dual-stack", base: validExport, cluster: &pb.Cluster{Id: "east", PodCidrs: []string{"10.1.0.0/16"}, ServiceCidrs: []string{"10.101.0.0/16", "fd00:101::/112"}},
			mod: func(se *pb.ServiceExport) { se.Ips = append(se.Ips, "fd00:101::a") }},
		{name: "valid client ip affinity", base: validExport, mod: func(se *pb.ServiceExport) {
			se.SessionAffinity, se.SessionAffinityTimeoutSeconds = pb.SessionAffinity_SESSION_AFFINITY_CLIENT_IP, 86400
		}},
		{name: "valid globalnet", base: validExport, cluster: globalC(), mod: func(se *pb.ServiceExport) { se.ClusterId = "gn-1"; se.Ips = []string{"242.0.255.1"} }},
		{name: "globalnet real IP", base: validExport, cluster: globalC(), mod: func(se *pb.ServiceExport) { se.ClusterId = "gn-1"; se.Ips = []string{"10.96.0.10"} },
			want: []string{`ips[0]: "10.96.0.10" is not inside the global CIDR of cluster "gn-1"`}},
		{name: "unknown cluster", base: validExport, noCluser: true, mod: func(*pb.ServiceExport) {}, want: []string{`cluster_id: "east" is not a known cluster`}},
		{name: "namespace missing", base: validExport, mod: func(se *pb.ServiceExport) { se.Namespace = "" }, want: []string{"namespace: is required"}},
		{name: "namespace bad", base: validExport, mod: func(se *pb.ServiceExport) { se.Namespace = "kube_system" }, want: []string{`namespace: "kube_system" is not a DNS-1123 label`}},
		{name: "name starts with digit", base: validExport, mod: func(se *pb.ServiceExport) { se.Name = "1nginx" }, want: []string{`name: "1nginx" is not a DNS-1035 label`}},
		{name: "name too long", base: validExport, mod: func(se *pb.ServiceExport) { se.Name = strings.Repeat("n", 64) }, want: []string{"is longer than 63 characters"}},
		{name: "type missing", base: validExport, mod: func(se *pb.ServiceExport) { se.Type = 0 }, want: []string{"type: is required (ClusterSetIP or Headless)"}},
		{name: "type unknown", base: validExport, mod: func(se *pb.ServiceExport) { se.Type = 9 }, want: []string{`type: "9" is not a known service type`}},
		{name: "no ports", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports = nil }, want: []string{"ports: needs at least one port for a ClusterSetIP export"}},
		{name: "too many ports", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports = make([]*pb.ServicePort, 1001) }, want: []string{"ports: has 1001 entries, at most 1000 allowed"}},
		{name: "port name missing", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[1].Name = "" }, want: []string{"ports[1].name: is required when the export has more than one port"}},
		{name: "port name duplicate", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[1].Name = "http" }, want: []string{`ports[1].name: "http" duplicates ports[0].name`}},
		{name: "port name bad", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[1].Name = "DNS" }, want: []string{`ports[1].name: "DNS" is not a DNS-1123 label`}},
		{name: "protocol missing", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[0].Protocol = 0 }, want: []string{"ports[0].protocol: is required (TCP, UDP or SCTP)"}},
		{name: "protocol unknown", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[0].Protocol = 4 }, want: []string{`ports[0].protocol: "4" is not a known protocol`}},
		{name: "port zero", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[0].Port = 0 }, want: []string{`ports[0].port: "0" is not a port number (want 1-65535)`}},
		{name: "port duplicate", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[1].Port, se.Ports[1].Protocol = 80, pb.Protocol_PROTOCOL_TCP },
			want: []string{`ports[1].port: "80" duplicates ports[0] (same port and protocol)`}},
		{name: "same port other protocol", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[1].Port = 80 }},
		{name: "app protocol bad", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[0].AppProtocol = "http/2 over tls" }, want: []string{`ports[0].app_protocol: "http/2 over tls" is not a qualified name`}},
		{name: "app protocol bad prefix", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[0].AppProtocol = "Example.com/x" }, want: []string{"is not a qualified name"}},
		{name: "app protocol too long", base: validExport, mod: func(se *pb.ServiceExport) { se.Ports[0].AppProtocol = strings.Repeat("a", 318) }, want: []string{"is longer than 317 characters"}},
		{name: "no ips", base: validExport, mod: func(se *pb.ServiceExport) { se.Ips = nil }, want: []string{"ips: needs at least one IP for a ClusterSetIP export"}},
		{name: "too many ips", base: validExport, mod: func(se *pb.ServiceExport) { se.Ips = []string{"10.101.0.1", "10.101.0.2", "10.101.0.3"} }, want: []string{"ips: has 3 entries, at most 2 allowed"}},
		{name: "same family twice", base: validExport, mod: func(se *pb.ServiceExport) { se.Ips = []string{"10.101.0.1", "10.101.0.2"} }, want: []string{`ips[1]: "10.101.0.2" is a second address of the same IP family`}},
		{name: "ip bad", base: validExport, mod: func(se *pb.ServiceExport) { se.Ips = []string{"224.0.0.1"} }, want: []string{`ips[0]: "224.0.0.1" is in the multicast range`}},
		{name: "ip outside cluster", base: validExport, mod: func(se *pb.ServiceExport) { se.Ips = []string{"10.102.0.1"} }, want: []string{`ips[0]: "10.102.0.1" is not inside the pod/service CIDRs of cluster "east"`}},
		{name: "endpoints on cluster-set-ip", base: validExport, mod: func(se *pb.ServiceExport) { se.Endpoints = validHeadless().Endpoints }, want: []string{"endpoints: must be empty unless the export is headless"}},
		{name: "ips on headless", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Ips = []string{"10.101.0.1"} }, want: []string{"ips: must be empty for a headless export"}},
		{name: "hostname bad", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints[1].Hostname = "PG-1" }, want: []string{`endpoints[1].hostname: "PG-1" is not a DNS-1123 label`}},
		{name: "hostname duplicate", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints[1].Hostname = "pg-0" }, want: []string{`endpoints[1].hostname: "pg-0" duplicates endpoints[0].hostname`}},
		{name: "endpoint without ips", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints[2].Ips = nil }, want: []string{"endpoints[2].ips: needs at least one IP"}},
		{name: "endpoint too many ips", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints[2].Ips = []string{"10.1.0.7", "10.1.0.8", "10.1.0.9"} }, want: []string{"endpoints[2].ips: has 3 entries, at most 2 allowed"}},
		{name: "endpoint ip duplicate", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints[2].Ips = []string{"10.1.0.5"} }, want: []string{`endpoints[2].ips[0]: "10.1.0.5" duplicates endpoints[0].ips[0]`}},
		{name: "endpoint ip outside", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints[0].Ips = []string{"192.168.1.5"} }, want: []string{`endpoints[0].ips[0]: "192.168.1.5" is not inside the pod/service CIDRs of cluster "east"`}},
		{name: "endpoint ip bad", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints[0].Ips = []string{"10.1.0.5 "} }, want: []string{`endpoints[0].ips[0]: "10.1.0.5 " is not an IP address`}},
		{name: "too many endpoints", base: validHeadless, mod: func(se *pb.ServiceExport) { se.Endpoints = make([]*pb.ExportEndpoint, 1001) }, want: []string{"endpoints: has 1001 entries, at most 1000 allowed"}},
		{name: "too many addresses", base: validHeadless, mod: func(se *pb.ServiceExport) {
			se.Endpoints = nil
			for i := 0; i < 501; i++ {
				se.Endpoints = append(se.Endpoints, &pb.ExportEndpoint{Ips: []string{fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), "fd00::1"}})
			}
		}, want: []string{"endpoints: have 1002 addresses in total, at most 1000 allowed"}},
		{name: "created missing", base: validExport, mod: func(se *pb.ServiceExport) { se.Created = nil }, want: []string{"created: is required"}},
		{name: "created invalid", base: validExport, mod: func(se *pb.ServiceExport) { se.Created = &timestamppb.Timestamp{Nanos: 2e9} }, want: []string{"created: is not a valid timestamp"}},
		{name: "timeout without affinity", base: validExport, mod: func(se *pb.ServiceExport) { se.SessionAffinityTimeoutSeconds = 10 }, want: []string{`session_affinity_timeout_seconds: "10" must be 0 without ClientIP session affinity`}},
		{name: "timeout too long", base: validExport, mod: func(se *pb.ServiceExport) {
			se.SessionAffinity, se.SessionAffinityTimeoutSeconds = pb.SessionAffinity_SESSION_AFFINITY_CLIENT_IP, 86401
		}, want: []string{`session_affinity_timeout_seconds: "86401" is longer than 86400`}},
		{name: "affinity unknown", base: validExport, mod: func(se *pb.ServiceExport) { se.SessionAffinity = 5 }, want: []string{`session_affinity: "5" is not a known session affinity`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			se := tt.base()
			tt.mod(se)
			c := tt.cluster
			if c == nil && !tt.noCluser {
				c = clusterA()
			}
			wantErrs(t, ServiceExport(se, c), tt.want...)
		})
	}
	wantErrs(t, ServiceExport(nil, clusterA()), "service export record is missing")
}

func FuzzValidateExport(f *testing.F) {
	for _, se := range []*pb.ServiceExport{validExport(), validHeadless()} {
		b, _ := proto.Marshal(se)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		se := &pb.ServiceExport{}
		if proto.Unmarshal(data, se) != nil {
			return
		}
		err := ServiceExport(se, clusterA())
		if err == nil {
			if se.GetCreated() == nil || se.GetType() == pb.ServiceType_SERVICE_TYPE_UNSPECIFIED {
				t.Fatalf("accepted invalid export %v", se)
			}
			return
		}
		if es, ok := AsErrors(err); !ok || len(es) > MaxErrors {
			t.Fatalf("error %v is not a bounded validate.Errors", err)
		}
	})
}
