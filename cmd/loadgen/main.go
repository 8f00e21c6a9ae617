// Command loadgen sends traffic to the storage API; see docs/loadgen.md.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sre-instrumentation/storage-api/internal/loadgen"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run stops the traffic on the first SIGINT/SIGTERM and prints the summary;
// a second signal kills the process the default way.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	return loadgen.Main(ctx, args, getenv, stdout, stderr)
}
