//go:build tools

// Package tools pins the code-generation tools that hack/generate.sh installs
// into .cache/tools/bin. The versions in go.mod are the contract:
//
//   - google.golang.org/protobuf/cmd/protoc-gen-go must equal the
//     google.golang.org/protobuf version of the root module, so the generated
//     code matches its runtime;
//   - google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.5.x emits code for
//     grpc.SupportPackageIsVersion9, which the root module's grpc v1.72
//     provides;
//   - github.com/bufbuild/protocompile is the pure-Go .proto compiler behind
//     cmd/weft-protoc (no protoc binary needed).
package tools

import (
	_ "github.com/bufbuild/protocompile"
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
