#!/usr/bin/env bash
# install-deps.sh installs the Debian packages weft's tests, lab and benchmarks
# need, only those that are missing. Safe to run again: a no-op when all are there.
set -euo pipefail

# command -> package
declare -A NEED=(
	[ip]=iproute2
	[tc]=iproute2
	[iptables]=iptables
	[iperf3]=iperf3
	[ping]=iputils-ping
	[wg]=wireguard-tools
	[ps]=procps
	[pkill]=procps
)

missing=()
for cmd in "${!NEED[@]}"; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		pkg="${NEED[$cmd]}"
		[[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "[deps] missing packages: ${missing[*]}; run as root or install them" >&2
	exit 1
fi
echo "[deps] installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# iperf3 asks whether to start a daemon; answer no.
echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
echo "[deps] done" >&2
