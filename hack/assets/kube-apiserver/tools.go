//go:build tools

// Package tools pins k8s.io/kubernetes so hack/build-assets.sh can build
// kube-apiserver from the Go module proxy.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
