#!/usr/bin/env bash
# Installs the pinned external tools the tests and make lint need (Prometheus, promtool, amtool, Alertmanager,
# helm, kube-score, versitygw, jaeger, golangci-lint) into .tools/bin, which git ignores. Each tool is rebuilt only when its pinned version changes:
# a stamp file per tool records the version it was built from.
#
#   tools/install.sh            # all tools
#   tools/install.sh helm       # just one
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"

# Pinned versions. Prometheus module v0.316.0 is release v3.16.0; keep this in step with
# the prom/prometheus image tag in docker-compose.yml (a test checks it).
PROMETHEUS_VERSION=v0.316.0
ALERTMANAGER_VERSION=v0.35.0
# The Alertmanager server the end-to-end test runs. v0.31.1 is the newest release that builds with go install:
# from v0.32 its web UI is embedded from ui/app/dist, a build output missing from the module zip, so v0.35.0 (the
# compose image) does not compile from the module proxy. Debian 12's prometheus-alertmanager is 0.25.0 (2022),
# needs root and apt, and exists on no other OS. v0.31.1 loads deploy/alertmanager/alertmanager.yml unchanged
# (routes with matchers, inhibit_rules with source/target_matchers), as amtool v0.35.0 checks it.
ALERTMANAGER_SERVER_VERSION=v0.31.1
# kube-score scores every chart render in test/k8s (about 3 minutes to build cold on 2 cores). Its packages
# cannot be used in-process there: v1.20.0 (the newest) imports k8s.io/api/autoscaling/v2beta2, which the
# k8s.io/api that helm v4 needs no longer has. kube-linter
# (golang.stackrox.io/kube-linter) and pint (github.com/cloudflare/pint) are not served by the Go module proxy
# this project can reach, so they are not installed; test/k8s and deploy/ check what they would have.
KUBE_SCORE_VERSION=v1.20.0
# The helm CLI is for deploy/k8s/up.sh and make k8s-apiserver-test; test/k8s renders the chart with helm's Go
# packages (test/k8s/go.mod pins the same version) and needs no binary.
HELM_VERSION=v4.3.1
# golangci-lint runs in make lint with .golangci.yml. go install at a version builds it from its own go.mod,
# so none of its dependencies enter this repository's modules.
GOLANGCI_LINT_VERSION=v2.15.0
VERSITYGW_VERSION=v1.8.0

# FIXTURE_FLAGS build the tools the tests start as fixtures (Prometheus, promtool, Alertmanager, amtool,
# versitygw, jaeger, kube-score) without optimisation or inlining: on a fresh machine compiling them is most of
# the first make test (about 1,100 CPU-seconds optimised; these flags cut a compile by about a quarter), while
# what they do in the tests (a handful of series, a few hundred requests, a few traces) runs in milliseconds
# either way. What they do is unchanged; only speed is. helm (for up.sh) and golangci-lint (CPU-heavy on every
# make lint) keep the default optimised build.
FIXTURE_FLAGS=(-gcflags=all=-N\ -l -ldflags=-s\ -w)

# install_in DIR NAME VERSION TARGET [go install flags...] runs `go install FLAGS TARGET` in DIR unless the
# stamp says NAME was built from VERSION with the same flags.
install_in() {
  local dir=$1 name=$2 version=$3 target=$4
  shift 4
  local stamp="$bin/.$name.version"
  if [[ -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version $*" ]]; then
    return 0
  fi
  echo "tools: building $name $version (cached afterwards in .tools/bin)" >&2
  local start=$SECONDS
  # Explicit: build_one runs under ||, where set -e does not stop a failed command.
  (cd "$dir" && GOBIN="$bin" go install "$@" "$target") || return 1
  echo "$version $*" >"$stamp"
  echo "tools: $name built in $((SECONDS - start))s" >&2
}

# install NAME VERSION PACKAGE [go install flags...]: PACKAGE@VERSION, outside any module of this repository.
install() {
  local name=$1 version=$2 pkg=$3
  shift 3
  GOFLAGS=-mod=mod install_in . "$name" "$version" "$pkg@$version" "$@"
}

# install_jaeger builds the Jaeger v2 all-in-one. Its go.mod has replace directives, so
# `go install pkg@version` refuses it: tools/jaeger is a module of its own that pins it (go get -tool),
# and the build runs from there. The stamp is the pinned version, so only a new pin rebuilds it.
install_jaeger() {
  local version
  version=$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2 }' tools/jaeger/go.mod)
  [[ -n "$version" ]] || { echo "tools: no jaeger version in tools/jaeger/go.mod" >&2; return 1; }
  install_in tools/jaeger jaeger "$version" github.com/jaegertracing/jaeger/cmd/jaeger "${FIXTURE_FLAGS[@]}"
}

# build_one NAME builds one tool (or returns at once when its stamp says it is current).
build_one() {
  case "$1" in
    # remove_all_sd drops the service-discovery plugins (half the build time); static targets still work,
    # and enable_dns_sd keeps DNS discovery, which the compose s3 profile uses for its two API replicas.
    prometheus) install prometheus "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/prometheus -tags remove_all_sd,enable_dns_sd "${FIXTURE_FLAGS[@]}" ;;
    promtool) install promtool "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/promtool -tags remove_all_sd,enable_dns_sd "${FIXTURE_FLAGS[@]}" ;;
    amtool) install amtool "$ALERTMANAGER_VERSION" github.com/prometheus/alertmanager/cmd/amtool "${FIXTURE_FLAGS[@]}" ;;
    alertmanager) install alertmanager "$ALERTMANAGER_SERVER_VERSION" github.com/prometheus/alertmanager/cmd/alertmanager "${FIXTURE_FLAGS[@]}" ;;
    kube-score) install kube-score "$KUBE_SCORE_VERSION" github.com/zegl/kube-score/cmd/kube-score "${FIXTURE_FLAGS[@]}" ;;
    golangci-lint) install golangci-lint "$GOLANGCI_LINT_VERSION" github.com/golangci/golangci-lint/v2/cmd/golangci-lint -ldflags "-s -w" ;;
    helm) install helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm -ldflags "-s -w" ;;
    jaeger) install_jaeger ;;
    versitygw) install versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw "${FIXTURE_FLAGS[@]}" ;;
    *) echo "tools: unknown tool $1" >&2; return 2 ;;
  esac
}

# Tools that share most of their packages are built one after the other in one group, so the second
# finds the first's compiled packages in the Go build cache instead of compiling them at the same time;
# groups build concurrently, TOOLS_JOBS at a time (default 3: on 2 cores one group's single-threaded
# link or download overlaps the others' compiles; more only adds memory pressure).
group_of() {
  case "$1" in
    prometheus | promtool) echo prometheus ;;
    amtool | alertmanager) echo alertmanager ;;
    *) echo "$1" ;;
  esac
}

want=("$@")
# Longest first: jaeger (the longest build, ~11 minutes on a busy 2-core machine) starts at once instead of
# waiting for a free slot, so it is not the last thing running.
[[ ${#want[@]} -gt 0 ]] || want=(jaeger helm kube-score prometheus promtool versitygw amtool alertmanager golangci-lint)

declare -A groups=()
order=()
for t in "${want[@]}"; do
  g=$(group_of "$t")
  [[ -v "groups[$g]" ]] || order+=("$g")
  groups[$g]+=" $t"
done

failed=$(mktemp)
trap 'rm -f "$failed"' EXIT
jobs_max=${TOOLS_JOBS:-3}
for g in "${order[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n || true; done
  (
    for t in ${groups[$g]}; do
      build_one "$t" || { echo "$t" >>"$failed"; exit 1; }
    done
  ) &
done
wait
if [[ -s "$failed" ]]; then
  echo "tools: failed to build: $(tr '\n' ' ' <"$failed")" >&2
  exit 1
fi
