// Package clitest checks a binary against the command-line convention of package cli: its
// run, called in process as main calls it, must give each class of outcome the exit status
// the convention assigns. Every binary's tests call Check with command lines of their own for
// the same classes, so the binaries agree by being held to one table (like storagetest for
// the storage backends).
package clitest

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
)

// Class is a kind of outcome every binary gives the same exit status.
type Class string

// The classes; Check requires a case of each.
const (
	Help          Class = "help"                  // -h: the usage, and success
	UnknownFlag   Class = "unknown flag"          // a flag the binary does not have
	BadValue      Class = "unparsable flag value" // a flag value of the wrong type
	BadEnv        Class = "unparsable variable"   // an environment variable's value of the wrong type
	InvalidConfig Class = "invalid config"        // values that parse but Validate refuses (give two: each is reported)
	Positional    Class = "positional argument"   // the binaries take flags only
	Failure       Class = "failure"               // a valid command line that fails while running
	Success       Class = "success"               // a valid command line that succeeds
)

// Want is the exit status of each class: the convention itself.
var Want = map[Class]int{
	Help:          cli.ExitOK,
	UnknownFlag:   cli.ExitUsage,
	BadValue:      cli.ExitUsage,
	BadEnv:        cli.ExitUsage,
	InvalidConfig: cli.ExitUsage,
	Positional:    cli.ExitUsage,
	Failure:       cli.ExitFailure,
	Success:       cli.ExitOK,
}

// Case is one command line of a binary in one class.
type Case struct {
	Class Class
	Args  []string
	Env   map[string]string // the whole environment run sees
	// Mention lists what stderr must name: the refused flag or variable; for InvalidConfig,
	// every refused value.
	Mention []string
}

// Run is a binary's run: what its main calls.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Timeout bounds one run: a case still running after it fails (say, a refused value that
// was accepted and started a server). It is a deadline for a failure, never a measurement.
const Timeout = 60 * time.Second

// Check runs each case through run and exitCode, in process, and checks: the exit status of
// its class; for a non-zero status, stderr lines that start with "name: " and name every
// Mention; for Help, the usage on stderr. It fails if a class has no case.
func Check(t *testing.T, name string, run Run, exitCode func(error, io.Writer) int, cases []Case) {
	t.Helper()
	covered := map[Class]bool{}
	for _, c := range cases {
		covered[c.Class] = true
		t.Run(string(c.Class), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), Timeout)
			defer cancel()
			var stdout, stderr strings.Builder
			err := run(ctx, c.Args, func(k string) string { return c.Env[k] }, &stdout, &stderr)
			if ctx.Err() != nil {
				t.Fatalf("%s %q (env %v) still running after %v; stderr:\n%s", name, c.Args, c.Env, Timeout, stderr.String())
			}
			code := exitCode(err, &stderr)
			if want := Want[c.Class]; code != want {
				t.Errorf("%s %q (env %v): exit status %d, want %d (%s); run returned %v\nstderr:\n%s",
					name, c.Args, c.Env, code, want, c.Class, err, stderr.String())
			}
			out := stderr.String()
			if code != cli.ExitOK && !strings.Contains("\n"+out, "\n"+name+": ") {
				t.Errorf("%s %q: no line starting %q on stderr:\n%s", name, c.Args, name+": ", out)
			}
			if c.Class == Help && !strings.Contains(out, "Usage of "+name) {
				t.Errorf("%s -h: no usage on stderr:\n%s", name, out)
			}
			for _, m := range c.Mention {
				if !strings.Contains(out, m) {
					t.Errorf("%s %q (env %v): stderr does not name %q:\n%s", name, c.Args, c.Env, m, out)
				}
			}
		})
	}
	for class := range Want {
		if !covered[class] {
			t.Errorf("%s: no case of class %q: every binary must show every class", name, class)
		}
	}
}
