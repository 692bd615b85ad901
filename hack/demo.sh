#!/usr/bin/env bash
# demo.sh: the weft demo (make demo installs deps, builds bin/ and the test
# assets first).
#
# Brings up three clusters of three nodes with two pods each as network
# namespaces (c3's gateway behind a NAT router), with per cluster a real
# kube-apiserver + etcd, the broker, and the real gateway and route-agent
# processes; then runs `weftctl lab verify`: a ping from every pod to a pod on
# a gateway node and a pod on a non-gateway node of every other cluster, and
# an iperf3 run per cluster pair. The lab stays up for exploring; the last
# lines say how to look around and how to tear it down.
#
# Environment: WEFTCTL (default bin/weftctl), TOPOLOGY (default
# pkg/lab/testdata/demo.yaml), LAB_NAME (default weft).
set -euo pipefail
cd "$(dirname "$0")/.."

WEFTCTL=${WEFTCTL:-bin/weftctl}
TOPOLOGY=${TOPOLOGY:-pkg/lab/testdata/demo.yaml}
LAB_NAME=${LAB_NAME:-weft}
export WEFT_ASSETS=${WEFT_ASSETS:-$(hack/build-assets.sh)}

step() { printf '\n[demo] %s\n' "$*"; }
die() { printf '[demo] FAILED: %s\n' "$*" >&2; exit 1; }
lab() { "$WEFTCTL" lab --name "$LAB_NAME" "$@"; }

[[ -x $WEFTCTL ]] || die "$WEFTCTL not found (run: make build)"
((EUID == 0)) || die "the lab needs root (network namespaces)"

nf=""
[[ $LAB_NAME == weft ]] || nf=" --name $LAB_NAME"

step "clean slate: weftctl lab down$nf"
lab down || die "lab down"

step "weftctl lab up$nf -f $TOPOLOGY   (namespaces, API servers, broker, gateways, route agents)"
lab up -f "$TOPOLOGY" || die "lab up"

step "weftctl lab status$nf"
lab status || die "lab status"

step "weftctl lab verify$nf   (waits up to 90 s for the tunnels, then pings and iperf3)"
if ! lab verify --wait 90s --iperf 3s; then
	die "verify failed; process logs in /run/weft-lab/$LAB_NAME/logs (tear down: $WEFTCTL lab down$nf)"
fi

kc=$(lab kubeconfig c1)
step "what cluster c1's API says"
if command -v kubectl >/dev/null; then
	kubectl --kubeconfig "$kc" -n weft-system get gateways,remoteclusters || true
fi

step "all checks passed"
cat <<EOF2
Explore:
  kubectl --kubeconfig \$($WEFTCTL lab kubeconfig$nf c1) -n weft-system get gateways,remoteclusters -o wide
  $WEFTCTL lab exec$nf c1/n1 -- wg show                    (the WireGuard device of c1's gateway)
  $WEFTCTL lab exec$nf c1/n2-p1 -- ping -c 3 \$($WEFTCTL lab ip$nf c2/n3-p1)   (non-gateway to non-gateway, across clusters)
  $WEFTCTL lab exec$nf c1/n2 -- ip route show table 176    (the VXLAN hop on a non-gateway node)
  $WEFTCTL lab status$nf                                   (namespaces, processes and their logs)
  $WEFTCTL broker status --admin-config /run/weft-lab/$LAB_NAME/fabric/admin-host.json
Tear down:
  $WEFTCTL lab down$nf
EOF2
