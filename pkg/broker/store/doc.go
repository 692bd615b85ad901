// Package store is the broker's storage layer over etcd.
//
// The broker keeps every record (clusters, endpoints, service exports,
// tokens, globalnet allocations, its CA) as an opaque []byte value under a
// key prefix (default "/weft/"). This package does not know the record
// types; the server encodes and decodes them.
//
// There is one storage code path, a [Store] over a *clientv3.Client, for both
// deployment modes:
//
//   - embedded: [StartEmbedded] runs a single-node etcd inside the broker
//     process (data directory on disk, listening on loopback only) and
//     hands out a client to it;
//   - external: [Connect] dials an etcd cluster, so that several broker
//     replicas can serve the same data.
//
// Every write returns the etcd revision it committed at. [Store.List]
// returns a consistent snapshot together with its revision, and
// [Store.Watch] resumes after a revision the caller has seen. When that
// revision has been compacted away the watch ends with an error matching
// [ErrCompacted]; the caller then takes a fresh snapshot with List and
// watches again from the snapshot's revision.
//
// Keys passed to and returned from a Store are relative to its prefix.
package store
