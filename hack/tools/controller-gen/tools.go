//go:build tools

// Package tools pins controller-gen (deepcopy and CRD manifests for
// pkg/apis/weft), in its own module so its Kubernetes dependencies stay
// apart from the protobuf generators.
package tools

import _ "sigs.k8s.io/controller-tools/cmd/controller-gen"
