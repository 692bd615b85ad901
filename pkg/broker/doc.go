// Package broker is weft's broker: the gRPC services of
// pkg/apis/broker/v1alpha1 over an etcd store (pkg/broker/store).
//
// Clusters join with a token and receive a client certificate whose
// identity is their cluster id (pkg/broker/ca); every member RPC is
// authorized by that identity, so a cluster writes only its own records.
// Every write is validated (pkg/broker/validate) and changes nothing when
// rejected. Records members see live under one key prefix ("r/") so one
// etcd watch per stream carries exactly them; tokens, heartbeats, the CA
// and allocation guards live outside it.
//
// Key layout below the store prefix (default /weft/):
//
//	ca                          CA certificate and key (created once)
//	r/clusters/<id>             Cluster (protobuf)
//	r/endpoints/<id>/<gateway>  Endpoint (protobuf)
//	r/exports/<id>/<ns>/<name>  ServiceExport (protobuf)
//	tokens/<token-id>           token record (JSON; secret stored hashed)
//	heartbeats/<id>             last heartbeat (RFC 3339), not streamed
//	globalnet/<slice>           cluster id owning a global CIDR slice
//	meta/clusters               guard bumped on every cluster change, so
//	                            concurrent joins cannot both pass overlap
//	                            checks against a stale view
package broker
