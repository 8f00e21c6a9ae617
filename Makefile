# One place for the build flags: the Dockerfile passes the same GO_LDFLAGS (a test in
# test/compose checks that they agree).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
GO_LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
GO_BUILD   := CGO_ENABLED=0 go build -trimpath -ldflags "$(GO_LDFLAGS)"
TOOLS      := .tools/bin

.PHONY: all build run tools test test-service test-compose test-k8s test-short helm-test k8s-apiserver-test bench bench-load lint fuzz kind-up kind-down clean

all: lint test

## build: the two binaries the image ships, into bin/
build:
	$(GO_BUILD) -o bin/ ./cmd/storage-api ./cmd/loadgen

## run: the API on :5000 with the bolt store in ./data (docker compose up runs the whole stack)
run:
	go run ./cmd/storage-api

## tools: the pinned tools (Prometheus, promtool, amtool, Alertmanager, helm, kube-score, versitygw, jaeger,
## golangci-lint) into .tools/bin (cached)
tools:
	bash tools/install.sh

## test: everything: unit, conformance, fuzz seeds, process, end-to-end with real
## Prometheus and versitygw, compose/Dockerfile checks, Helm rendering checks. Builds the tools it needs first
## (not golangci-lint, which make lint builds).
TEST_TOOLS := jaeger kube-score prometheus promtool versitygw amtool alertmanager
## The three modules' tests run at the same time once the tools exist: much of each is waiting on processes
## and sockets, so together they take about as long as the longest (the service module's) instead of the
## sum; --output-sync prints each module's results together, when it ends.
test:
	bash tools/install.sh $(TEST_TOOLS)
	$(MAKE) --no-print-directory -j3 --output-sync=target test-service test-compose test-k8s

## test-service / test-compose / test-k8s: one module's tests (the tools must exist: make tools)
test-service:
	go test -race -count=1 ./...
test-compose:
	cd test/compose && go test -count=1 ./...
test-k8s:
	cd test/k8s && go test -count=1 ./...

## test-short: the fast subset (no external tools, no long end-to-end runs)
test-short:
	go test -race -short ./...

## helm-test: the offline chart checks alone (helm lint/template/package through helm's Go packages,
## strict typed decoding, kube-score)
helm-test:
	bash tools/install.sh kube-score
	$(MAKE) --no-print-directory test-k8s

## k8s-apiserver-test: optional, slow the first time (~20 min to build kube-apiserver and
## etcd, cached): helm install --dry-run=server and a real install against a real apiserver
k8s-apiserver-test:
	bash tools/install.sh helm
	bash test/k8s/apiserver/install.sh
	cd test/k8s/apiserver && go test -count=1 ./...

## bench: Go micro-benchmarks (compare runs with benchstat)
bench:
	go test -run '^$$' -bench . -benchmem -count 6 ./internal/...

## bench-load: wrk against the running server, both backends (docs/performance.md)
bench-load:
	bash scripts/bench-load.sh

## fuzz: run each fuzz target for FUZZTIME; their seed corpora run in `make test`; test/compose checks every Fuzz function is listed here. CI runs `make fuzz FUZZTIME=5s`.
FUZZTIME ?= 20s
fuzz:
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzHandler -fuzztime $(FUZZTIME) ./internal/api
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzValidateID -fuzztime $(FUZZTIME) ./internal/api
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzETagMatches -fuzztime $(FUZZTIME) ./internal/api
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzAccessLogString -fuzztime $(FUZZTIME) ./internal/api
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzParseCondition -fuzztime $(FUZZTIME) ./internal/api
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzFramingScanner -fuzztime $(FUZZTIME) ./internal/api
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzRecord -fuzztime $(FUZZTIME) ./internal/storage/bolt
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzCheckMeta -fuzztime $(FUZZTIME) ./internal/storage/bolt
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzObjectName -fuzztime $(FUZZTIME) ./internal/storage/s3
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzParseMix -fuzztime $(FUZZTIME) ./internal/loadgen
	bash scripts/fuzz.sh -run '^$$' -fuzz FuzzParseSize -fuzztime $(FUZZTIME) ./internal/loadgen

## lint: gofmt on the tree; go vet and golangci-lint (.golangci.yml, pinned in tools/install.sh) on every module that holds packages (found, not listed, so a new module is
## vetted too; tools/* only pin tool versions). test/k8s/apiserver's vet compiles etcd's server packages: about
## a minute the first time, cached afterwards.
GO_MODULES := $(patsubst ./%,%,$(shell find . -name go.mod -not -path './.tools/*' -not -path './tools/*' -exec dirname {} \; | sort))
lint:
	bash tools/install.sh golangci-lint
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	@set -e; for m in $(GO_MODULES); do echo "go vet, golangci-lint: $$m"; (cd $$m && go vet ./... && $(CURDIR)/$(TOOLS)/golangci-lint run ./...); done

## kind-up / kind-down: the whole stack on a local kind cluster (needs Docker and kind)
kind-up:
	bash deploy/k8s/up.sh
kind-down:
	bash deploy/k8s/down.sh

clean:
	rm -rf bin
