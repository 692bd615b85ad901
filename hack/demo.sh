#!/usr/bin/env bash
# demo.sh: the weft lab demo (make demo builds bin/weftctl first).
#
# For now the lab has no fabric: it builds three clusters of three nodes
# with two pods each (c3 behind a NAT router) as network namespaces, shows
# them, and checks pod-to-pod connectivity inside every cluster, across
# nodes, and that clusters cannot reach each other yet. The lab stays up
# for exploring; the last lines say how to tear it down.
#
# Environment: WEFTCTL (default bin/weftctl), TOPOLOGY (default
# pkg/lab/testdata/demo.yaml), LAB_NAME (default weft).
set -euo pipefail
cd "$(dirname "$0")/.."

WEFTCTL=${WEFTCTL:-bin/weftctl}
TOPOLOGY=${TOPOLOGY:-pkg/lab/testdata/demo.yaml}
LAB_NAME=${LAB_NAME:-weft}

step() { printf '\n[demo] %s\n' "$*"; }
die() { printf '[demo] FAILED: %s\n' "$*" >&2; exit 1; }
lab() { "$WEFTCTL" lab --name "$LAB_NAME" "$@"; }

[[ -x $WEFTCTL ]] || die "$WEFTCTL not found (run: make build)"
((EUID == 0)) || die "the lab needs root (network namespaces)"

name_flag=""
[[ $LAB_NAME == weft ]] || name_flag=" --name $LAB_NAME"

step "clean slate: weftctl lab down$name_flag"
lab down || die "lab down"

step "weftctl lab up$name_flag -f $TOPOLOGY"
lab up -f "$TOPOLOGY" || die "lab up"

step "weftctl lab status$name_flag"
status=$(lab status) || die "lab status"
printf '%s\n' "$status"

# Pods by cluster, from the status table (TARGET ROLE ...): c1/n1-p1 ...
mapfile -t pods < <(awk '$2 == "pod" { print $1 }' <<<"$status")
mapfile -t clusters < <(printf '%s\n' "${pods[@]}" | cut -d/ -f1 | uniq)
((${#clusters[@]} > 0)) || die "no pods in the lab"

# probe FROM TO EXPECT: ping TO's address from FROM; prints one table row
# and returns 1 when the outcome differs from EXPECT (ok|blocked).
fail=0
probe() {
	local from=$1 to=$2 expect=$3 addr out result rtt="-"
	addr=$(lab ip "$to") || die "lab ip $to"
	if out=$(lab exec "$from" -- ping -n -c 1 -W 1 "$addr" 2>&1); then
		result=ok
		rtt=$(sed -n 's/.*time=\([0-9.]*\) ms.*/\1 ms/p' <<<"$out" | head -n1)
	else
		result=blocked
	fi
	local verdict=PASS
	[[ $result == "$expect" ]] || { verdict=FAIL; fail=1; }
	printf '%-10s %-12s %-12s %-10s %-9s %-9s %-9s %s\n' "${from%%/*}" "$from" "$to" "$addr" "$expect" "$result" "$rtt" "$verdict"
}

step "pod-to-pod pings inside each cluster (same node and across nodes), and across clusters"
printf '%-10s %-12s %-12s %-10s %-9s %-9s %-9s %s\n' CLUSTER FROM TO ADDRESS EXPECT RESULT RTT VERDICT
for c in "${clusters[@]}"; do
	mapfile -t cpods < <(printf '%s\n' "${pods[@]}" | grep "^$c/")
	# From the first pod to every other pod of the cluster: the other pods
	# on its node, and every pod on the other nodes.
	for dst in "${cpods[@]:1}"; do
		probe "${cpods[0]}" "$dst" ok
	done
done
if ((${#clusters[@]} > 1)); then
	# No fabric yet: clusters must not reach each other.
	first=$(printf '%s\n' "${pods[@]}" | grep "^${clusters[0]}/" | head -n1)
	other=$(printf '%s\n' "${pods[@]}" | grep "^${clusters[1]}/" | head -n1)
	probe "$first" "$other" blocked
fi

((fail == 0)) || die "some pings did not behave as expected (the lab is left up for debugging; tear down: $WEFTCTL lab down$name_flag)"

step "all checks passed"
cat <<EOF2
Explore:
  $WEFTCTL lab status$name_flag
  $WEFTCTL lab exec$name_flag c1/n1-p1 -- ping -c 3 \$($WEFTCTL lab ip$name_flag c1/n2-p1)
  $WEFTCTL lab exec$name_flag c1/n1 -- ip route
  $WEFTCTL lab exec$name_flag c3/rtr -- iptables -t nat -L -v -n
  $WEFTCTL lab exec$name_flag c2/n1          (a shell in node n1 of c2)
Tear down:
  $WEFTCTL lab down$name_flag
EOF2
