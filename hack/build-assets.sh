#!/usr/bin/env bash
# build-assets.sh builds the control-plane binaries that integration tests and
# the lab need (kube-apiserver, etcd), and the stock wireguard-go binary that
# `make bench` compares against, at pinned versions from the Go module
# proxy, into a git-ignored cache. A second run is a no-op.
#
# Prints the asset directory (suitable for KUBEBUILDER_ASSETS) on stdout; all
# progress goes to stderr.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.6}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WEFT_CACHE:-$ROOT/.cache}"
OUT="$CACHE/assets/k8s-${KUBE_VERSION}-etcd-${ETCD_VERSION}"

log() { printf '[assets] %s\n' "$*" >&2; }

if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" && -x "$OUT/wireguard-go" ]]; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$OUT"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

# progress prints a line every 15 s while a long step runs.
progress() {
	local what="$1" pid="$2" start=$SECONDS
	while kill -0 "$pid" 2>/dev/null; do
		sleep 15
		kill -0 "$pid" 2>/dev/null && log "$what: still building ($((SECONDS - start)) s)"
	done
	wait "$pid"
}

if [[ ! -x "$OUT/etcd" ]]; then
	log "building etcd ${ETCD_VERSION} (under a minute)"
	(cd "$ROOT/hack/assets/etcd" && go build -trimpath -o "$OUT/etcd.tmp" . ) &
	progress etcd $!
	mv "$OUT/etcd.tmp" "$OUT/etcd"
fi

if [[ ! -x "$OUT/wireguard-go" ]]; then
	log "building stock wireguard-go (seconds)"
	(cd "$ROOT/hack/assets/wireguard-go" && go build -trimpath -o "$OUT/wireguard-go.tmp" golang.zx2c4.com/wireguard)
	mv "$OUT/wireguard-go.tmp" "$OUT/wireguard-go"
fi

if [[ ! -x "$OUT/kube-apiserver" ]]; then
	log "building kube-apiserver ${KUBE_VERSION} (about 5 minutes on 2 cores, once)"
	(cd "$ROOT/hack/assets/kube-apiserver" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver) &
	progress kube-apiserver $!
	mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
fi
log "assets ready in $OUT"
echo "$OUT"
