// Package compose holds the checks for the container image and the local stack
// that need no Docker engine: docker-compose.yml is loaded with compose-go, the
// Dockerfile is parsed with BuildKit's parser, and the binaries the image runs are
// built with the Dockerfile's own flags and started with the compose environment.
//
// It is a separate module so that compose-go and BuildKit stay out of the
// service's dependency graph. Run it with `cd test/compose && go test ./...`.
package compose
