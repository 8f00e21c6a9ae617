// Package cli is the command-line convention the repository's binaries (storage-api, loadgen)
// share: what each exit status means, and the error type that marks a refused command line, so
// that every main maps run's error to its exit status the same way (ExitCode).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit statuses every binary gives. A binary may document one more of its own (loadgen: 3,
// the asked rate was not delivered).
const (
	// ExitOK: the command succeeded, or -h printed the usage.
	ExitOK = 0
	// ExitFailure: the command line was valid and the command failed while running.
	ExitFailure = 1
	// ExitUsage: a flag, environment variable or value was refused before anything ran; 2
	// because that is what the flag package itself exits with (flag.ExitOnError).
	ExitUsage = 2
)

// UsageError is a command line or environment refused before anything ran: an unknown flag, a
// value that does not parse, or a configuration Validate refuses.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the refused value's error, so errors.Is and errors.As see through.
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as a UsageError. nil stays nil (so Usage(cfg.Validate()) reads naturally),
// and so does flag.ErrHelp, which is no error to report.
func Usage(err error) error {
	var u *UsageError
	if err == nil || errors.Is(err, flag.ErrHelp) || errors.As(err, &u) {
		return err
	}
	return &UsageError{Err: err}
}

// ExitCode is the exit status for run's result: ExitOK for nil and for -h (flag.ErrHelp: the usage
// is printed already), ExitUsage for a UsageError, ExitFailure for any other error. An error is
// printed to stderr, each of its lines (errors.Join puts one problem on each) prefixed by name.
func ExitCode(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(stderr, "%s: %s\n", name, line)
	}
	var u *UsageError
	if errors.As(err, &u) {
		return ExitUsage
	}
	return ExitFailure
}
