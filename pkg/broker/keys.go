package broker

import (
	"fmt"
	"net/netip"
	"strings"

	"google.golang.org/protobuf/proto"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
)

const (
	keyCA            = "ca"
	prefixRecords    = "r/"
	prefixClusters   = "r/clusters/"
	prefixEndpoints  = "r/endpoints/"
	prefixExports    = "r/exports/"
	prefixTokens     = "tokens/"
	prefixHeartbeats = "heartbeats/"
	prefixGlobalnet  = "globalnet/"
	keyClusterGuard  = "meta/clusters"
)

func clusterKey(id string) string           { return prefixClusters + id }
func endpointKey(id, gateway string) string { return prefixEndpoints + id + "/" + gateway }
func endpointsOf(id string) string          { return prefixEndpoints + id + "/" }
func exportKey(id, ns, name string) string  { return prefixExports + id + "/" + ns + "/" + name }
func exportsOf(id string) string            { return prefixExports + id + "/" }
func tokenKey(id string) string             { return prefixTokens + id }
func heartbeatKey(id string) string         { return prefixHeartbeats + id }
func globalnetKey(p netip.Prefix) string {
	return prefixGlobalnet + strings.ReplaceAll(p.String(), "/", "_")
}

// decodeRecord turns a stored record into the watch event payload.
func decodeRecord(key string, value []byte, ev *v1.WatchEvent) error {
	switch {
	case strings.HasPrefix(key, prefixClusters):
		var c v1.Cluster
		if err := proto.Unmarshal(value, &c); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		ev.Record = &v1.WatchEvent_Cluster{Cluster: &c}
	case strings.HasPrefix(key, prefixEndpoints):
		var e v1.Endpoint
		if err := proto.Unmarshal(value, &e); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		ev.Record = &v1.WatchEvent_Endpoint{Endpoint: &e}
	case strings.HasPrefix(key, prefixExports):
		var x v1.ServiceExport
		if err := proto.Unmarshal(value, &x); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		ev.Record = &v1.WatchEvent_Export{Export: &x}
	default:
		return fmt.Errorf("unknown record key %q", key)
	}
	return nil
}

// deletedRecord builds the key-only record of a delete event.
func deletedRecord(key string, ev *v1.WatchEvent) error {
	parts := strings.Split(key, "/")
	switch {
	case strings.HasPrefix(key, prefixClusters) && len(parts) == 3:
		ev.Record = &v1.WatchEvent_Cluster{Cluster: &v1.Cluster{Id: parts[2]}}
	case strings.HasPrefix(key, prefixEndpoints) && len(parts) == 4:
		ev.Record = &v1.WatchEvent_Endpoint{Endpoint: &v1.Endpoint{ClusterId: parts[2], Gateway: parts[3]}}
	case strings.HasPrefix(key, prefixExports) && len(parts) == 5:
		ev.Record = &v1.WatchEvent_Export{Export: &v1.ServiceExport{ClusterId: parts[2], Namespace: parts[3], Name: parts[4]}}
	default:
		return fmt.Errorf("unknown record key %q", key)
	}
	return nil
}
