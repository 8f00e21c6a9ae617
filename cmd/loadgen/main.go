// Command loadgen sends traffic to the storage API; see docs/loadgen.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sre-instrumentation/storage-api/internal/cli"
	"github.com/sre-instrumentation/storage-api/internal/loadgen"
)

func main() {
	os.Exit(exitCode(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr), os.Stderr))
}

// exitRateNotDelivered is loadgen's one exit status beyond the shared ones (internal/cli):
// the run finished, but in rate mode some scheduled requests went late or were dropped.
// docs/loadgen.md documents it and test/e2e accepts it from a loaded machine.
const exitRateNotDelivered = 3

// errRateNotDelivered is what run returns for exitRateNotDelivered.
var errRateNotDelivered = errors.New("the asked rate was not delivered")

// exitCode maps run's result to the process's exit status, printing the error: the
// convention both binaries share (internal/cli): 0 for success and -h, 2 for a refused flag,
// variable or value, 1 for any other failure; and 3 for errRateNotDelivered.
func exitCode(err error, stderr io.Writer) int {
	code := cli.ExitCode("loadgen", err, stderr)
	if errors.Is(err, errRateNotDelivered) {
		return exitRateNotDelivered
	}
	return code
}

// run parses the configuration, sends the traffic and prints the summary to stdout;
// progress and logs go to stderr. The error says why the run failed: a refused
// configuration (a cli.UsageError), a run that could not start, an error ratio above
// -max-error-ratio, or errRateNotDelivered.
//
// The first SIGINT or SIGTERM stops the traffic and the summary is printed; a second one
// kills the process the default way. The signal handling is here, not in main, so tests
// that call run get the binary's behaviour (as cmd/storage-api's run does).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	cfg, err := loadgen.ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	sum, err := loadgen.Run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.Output == "json" {
		err = sum.WriteJSON(stdout)
	} else {
		err = sum.WriteText(stdout)
	}
	if err != nil {
		return fmt.Errorf("writing summary: %w", err)
	}
	if !sum.Passed() {
		return fmt.Errorf("error ratio %.4f exceeds -max-error-ratio %.4f", sum.ErrorRatio, sum.MaxErrorRatio)
	}
	if sum.Mode == loadgen.ModeRate && !sum.RateDelivered {
		return fmt.Errorf("%w: %g req/s asked; of %d scheduled requests %d were late (all %d workers busy) and %d dropped; "+
			"raise -max-concurrency or lower -rate", errRateNotDelivered, sum.TargetRate, sum.Scheduled, sum.Late, cfg.MaxConcurrency, sum.Dropped)
	}
	return nil
}
