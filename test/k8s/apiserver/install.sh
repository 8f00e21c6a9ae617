#!/usr/bin/env bash
# Builds what the server-side chart check (dryrun_test.go) needs, from the Go module proxy, into
# .tools/bin (git ignores it), and generates the ServiceMonitor and PrometheusRule CRDs from the same
# prometheus-operator API version the offline tests decode with. Cached: each step reruns only when
# go.mod, crdgen/go.mod or this script changes (a stamp records their hash). About 15 CPU-minutes cold.
#
#   test/k8s/apiserver/install.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin="$root/.tools/bin"
crds="$root/.tools/k8s-crds"
mkdir -p "$bin"
cd "$here"

stamp="$bin/.k8s-apiserver.version"
want=$(cat go.mod crdgen/go.mod install.sh | sha256sum | cut -d' ' -f1)
if [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/controller-gen" && -f "$crds/monitoring.coreos.com_servicemonitors.yaml" \
      && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

start=$SECONDS
echo "k8s-apiserver: building kube-apiserver, etcd and controller-gen (cached afterwards in .tools/bin)" >&2
# Versions come from go.mod: k8s.io/kubernetes (kube-apiserver), go.etcd.io/etcd/server/v3 (etcd); and
# from crdgen/go.mod: sigs.k8s.io/controller-tools (controller-gen), prometheus-operator's monitoring API.
# A go-built apiserver reports v0.0.0-master unless told its version, and charts check kubeVersion.
kver=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
kmajor=${kver#v}; kmajor=${kmajor%%.*}
kminor=${kver#v*.}; kminor=${kminor%%.*}
vpkg=k8s.io/component-base/version
go build -trimpath -ldflags "-s -w -X $vpkg.gitVersion=$kver -X $vpkg.gitMajor=$kmajor -X $vpkg.gitMinor=$kminor" \
  -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "-s -w" -o "$bin/etcd" ./cmd/etcd
(cd crdgen && go build -trimpath -ldflags "-s -w" -o "$bin/controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Run inside crdgen so the package resolves at that module's pinned version; same options as upstream.
(cd crdgen && "$bin/controller-gen" crd:crdVersions=v1 \
  paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 output:crd:dir="$tmp")
rm -rf "$crds"
mkdir -p "$crds"
cp "$tmp/monitoring.coreos.com_servicemonitors.yaml" "$tmp/monitoring.coreos.com_prometheusrules.yaml" "$crds/"

echo "$want" >"$stamp"
echo "k8s-apiserver: built in $((SECONDS - start))s" >&2
