#!/usr/bin/env bash
# check-leftovers.sh fails when tests left network namespaces or links behind.
# Every test-made name starts with "wt" (tests) or the lab's prefix "weft".
set -euo pipefail
bad=0
if ns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(wt|weft)' ); then
	echo "[leftovers] network namespaces left behind:" $ns >&2; bad=1
fi
if links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(wt|weft)'); then
	echo "[leftovers] links left behind in the host namespace:" $links >&2; bad=1
fi
if socks=$(ls /var/run/wireguard/ 2>/dev/null | grep -E '^(wt|weft)'); then
	echo "[leftovers] WireGuard UAPI sockets left behind:" $socks >&2; bad=1
fi
if ((bad == 0)); then echo "[leftovers] none: no test namespace or link left behind" >&2; fi
exit $bad
