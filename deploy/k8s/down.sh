#!/usr/bin/env bash
# Tears down what up.sh made: stops its port-forwards and deletes the kind cluster.
#   deploy/k8s/down.sh                        # everything
#   deploy/k8s/down.sh --port-forwards-only   # just the port-forwards (up.sh uses this before re-forwarding)
set -euo pipefail

CLUSTER=${KIND_CLUSTER_NAME:-storage-api}
cd "$(dirname "$0")/../.."
root=$(pwd)
state="$root/.tools/kind-$CLUSTER"
export PATH="$root/.tools/bin:$PATH"

# Only the processes up.sh started, by the pids it recorded.
if [[ -f "$state/port-forward.pids" ]]; then
  while read -r pid; do
    # Skip a pid the system has since given to another process.
    if ps -p "$pid" -o args= 2>/dev/null | grep -q "kubectl.*port-forward"; then
      kill "$pid" 2>/dev/null || true
    fi
  done <"$state/port-forward.pids"
  rm -f "$state/port-forward.pids"
fi
[[ "${1:-}" == "--port-forwards-only" ]] && exit 0

if command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind delete cluster --name "$CLUSTER"
fi
rm -rf "$state"
echo "down.sh: cluster $CLUSTER removed"
