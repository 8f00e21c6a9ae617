# Storage API image: storage-api and loadgen, static binaries on distroless.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg REVISION=$(git rev-parse HEAD) -t storage-api:local .
#
# Base images are pinned by tag and digest so a rebuild cannot silently change the
# toolchain or the runtime. Refresh both together, e.g. with
# `docker buildx imagetools inspect golang:1.26.8-trixie`.
# The Go patch release must stay >= the go line of go.mod (GOTOOLCHAIN=local below
# makes a mismatch fail instead of downloading another toolchain); a test checks it.

# The build stage runs on the builder's own platform and cross-compiles, which is
# much faster than emulating the target for multi-arch images.
FROM --platform=$BUILDPLATFORM golang:1.26.8-trixie@sha256:bdca99a00bc16590cb1a0bb4e698f5fc5d6a64e4d5eef13d9f18a0ee08e5fa65 AS build
ENV GOTOOLCHAIN=local
WORKDIR /src

# Modules first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY cmd/ cmd/
COPY internal/ internal/

ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
# Same flags as the Makefile's build target (a test in test/compose compares them),
# so the image runs the binaries the tests built.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/bin/ ./cmd/storage-api ./cmd/loadgen \
 && mkdir -p /out/data

# distroless/static has no shell and no package manager: only the binaries, CA
# certificates (for S3 over TLS), tzdata and /etc/passwd with the nonroot user.
FROM gcr.io/distroless/static-debian13:nonroot@sha256:f7f8f729987ad0fdf6b05eeeae94b26e6a0f613bdf46feea7fc40f7bd72953e6

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="storage-api" \
      org.opencontainers.image.description="Blob storage HTTP API instrumented with Prometheus, plus its traffic generator (loadgen)" \
      org.opencontainers.image.source="https://github.com/sre-instrumentation/storage-api" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=build /out/bin/storage-api /out/bin/loadgen /usr/local/bin/
# No shell in the final image, so the data directory is made in the build stage and
# copied with its owner: the bolt file must be writable by the nonroot user.
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATA_DIR=/data
VOLUME /data

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 5000
# No curl/wget here: the binary checks its own /healthz on 127.0.0.1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/storage-api", "-healthcheck"]
ENTRYPOINT ["/usr/local/bin/storage-api"]
