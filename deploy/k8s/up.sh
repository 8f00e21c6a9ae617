#!/usr/bin/env bash
# Runs the whole stack on a local kind cluster: creates the cluster, builds the image and loads it into
# kind, installs kube-prometheus-stack (namespace monitoring) and the storage-api chart (namespace
# storage), waits until ready, port-forwards Grafana, Prometheus and the API, and prints the URLs.
# Needs docker, kubectl and Go (kind and helm are installed into .tools/bin at pinned versions).
# Tear down with deploy/k8s/down.sh. Safe to re-run: every step is an upgrade or a no-op.
set -euo pipefail

# Pinned versions. kind node images must be pinned by digest to the kind release that built them.
KIND_VERSION=v0.33.0
KIND_NODE_IMAGE="kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed"
KUBE_PROMETHEUS_STACK_VERSION=87.12.5
PROMETHEUS_COMMUNITY_REPO=https://prometheus-community.github.io/helm-charts

CLUSTER=${KIND_CLUSTER_NAME:-storage-api}
MONITORING_NS=monitoring
APP_NS=storage

cd "$(dirname "$0")/../.."
root=$(pwd)
bin="$root/.tools/bin"
state="$root/.tools/kind-$CLUSTER"
mkdir -p "$bin" "$state"
export PATH="$bin:$PATH"

need() { command -v "$1" >/dev/null 2>&1 || { echo "up.sh: $1 is required: $2" >&2; exit 1; }; }
need docker "install Docker (a running engine; kind runs the cluster inside it)"
need kubectl "install kubectl (any version within one minor of Kubernetes ${KIND_NODE_IMAGE#kindest/node:})"
need go "install Go (builds kind and helm)"
if ! kind version 2>/dev/null | grep -q "${KIND_VERSION}"; then
  echo "up.sh: installing kind ${KIND_VERSION} into .tools/bin" >&2
  GOBIN="$bin" go install "sigs.k8s.io/kind@${KIND_VERSION}"
fi
[[ -x "$bin/helm" ]] || tools/install.sh helm

chart="$root/deploy/helm/storage-api"
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")
image="ghcr.io/sre-instrumentation/storage-api:${app_version}"

echo "== kind cluster $CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

echo "== image $image"
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
docker build --build-arg VERSION="$app_version" --build-arg REVISION="$revision" -t "$image" "$root"
kind load docker-image --name "$CLUSTER" "$image"

echo "== namespaces"
for ns in "$MONITORING_NS" "$APP_NS"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
# The app namespace enforces the restricted Pod Security Standard the chart is written to meet.
kubectl label namespace "$APP_NS" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted >/dev/null

echo "== Grafana admin Secret (random password, never in git)"
if ! kubectl -n "$MONITORING_NS" get secret grafana-admin >/dev/null 2>&1; then
  kubectl -n "$MONITORING_NS" create secret generic grafana-admin \
    --from-literal=admin-user=admin \
    --from-literal=admin-password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >/dev/null
fi

echo "== kube-prometheus-stack ${KUBE_PROMETHEUS_STACK_VERSION}"
helm upgrade --install monitoring kube-prometheus-stack \
  --repo "$PROMETHEUS_COMMUNITY_REPO" --version "$KUBE_PROMETHEUS_STACK_VERSION" \
  --namespace "$MONITORING_NS" \
  --values deploy/k8s/kube-prometheus-stack-values.yaml \
  --wait --timeout 10m

echo "== storage-api chart"
helm upgrade --install storage-api "$chart" \
  --namespace "$APP_NS" \
  --values deploy/k8s/storage-api-values.yaml \
  --wait --timeout 5m
kubectl -n "$APP_NS" rollout status deployment/storage-api --timeout 120s
kubectl -n "$APP_NS" rollout status deployment/storage-api-loadgen --timeout 120s
kubectl -n "$MONITORING_NS" rollout status deployment/grafana --timeout 300s

echo "== port-forwards (pids in $state/port-forward.pids)"
"$root/deploy/k8s/down.sh" --port-forwards-only
forward() { # namespace target local:remote
  nohup kubectl -n "$1" port-forward "$2" "$3" >"$state/$(echo "$2" | tr / -).log" 2>&1 &
  echo $! >>"$state/port-forward.pids"
}
forward "$MONITORING_NS" svc/grafana 3000:80
forward "$MONITORING_NS" svc/kube-prometheus-prometheus 9090:9090
forward "$APP_NS" svc/storage-api 5000:5000
sleep 2

password=$(kubectl -n "$MONITORING_NS" get secret grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d)
cat <<MSG

Ready.
  Grafana     http://localhost:3000/d/storage-api   (admin / ${password})
  Prometheus  http://localhost:9090/targets          (jobs storage_api and loadgen)
  API         http://localhost:5000/api/buckets/<id> (metrics on /metrics)
Stop the port-forwards and delete the cluster with deploy/k8s/down.sh
MSG
