// Package brokerv1alpha1 is the weft broker's gRPC contract (protobuf package
// weft.broker.v1alpha1): the JoinService, MemberService and AdminService
// services and the Cluster, Endpoint and ServiceExport records they carry.
//
// broker.proto is the source; the *.pb.go files are generated from it by
// `make generate` (hack/generate.sh) and committed. Validation of the records
// lives in pkg/broker/validate, the join token format in pkg/broker/token.
package brokerv1alpha1
