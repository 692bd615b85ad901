//go:build tools

// Package tools pins upstream (unpatched) wireguard-go, built by
// hack/build-assets.sh as the stock baseline for `make bench`.
package tools

import _ "golang.zx2c4.com/wireguard"
