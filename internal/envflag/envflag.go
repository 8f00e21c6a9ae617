// Package envflag is a flag.FlagSet whose flags each have an environment variable.
// Precedence: an explicit flag, then the variable, then the default. -h lists both.
package envflag

import (
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/cli"
)

// FlagSet is a flag.FlagSet with an environment variable per flag.
type FlagSet struct {
	*flag.FlagSet
	env   map[string]string // flag name -> variable
	order []string
	set   map[string]bool
	// floats are the float flags, checked to be finite after parsing: strconv (and so
	// the flag package) accepts "NaN" and "Inf", which every comparison in a range
	// check lets through.
	floats map[string]*float64
	// Footer is printed after the flags by -h (variables read without a flag).
	Footer string
}

// New returns a FlagSet that prints errors and usage to output.
func New(name string, output io.Writer) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}}
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintf(output, "Usage of %s (each flag can also be set by the variable shown; the flag wins):\n", name)
		fs.PrintDefaults()
		if fs.Footer != "" {
			fmt.Fprint(output, "\n"+fs.Footer)
		}
	}
	return fs
}

func (fs *FlagSet) bind(name, env string) {
	fs.env[name] = env
	fs.order = append(fs.order, name)
	f := fs.Lookup(name)
	f.Usage += " (env " + env + ")"
}

// StringVar defines a string flag -name, also set by the variable env.
func (fs *FlagSet) StringVar(p *string, name, env, value, usage string) {
	fs.FlagSet.StringVar(p, name, value, usage)
	fs.bind(name, env)
}

// String is StringVar returning a pointer to the value.
func (fs *FlagSet) String(name, env, value, usage string) *string {
	p := new(string)
	fs.StringVar(p, name, env, value, usage)
	return p
}

// BoolVar defines a bool flag -name, also set by the variable env.
func (fs *FlagSet) BoolVar(p *bool, name, env string, value bool, usage string) {
	fs.FlagSet.BoolVar(p, name, value, usage)
	fs.bind(name, env)
}

// IntVar defines an int flag -name, also set by the variable env.
func (fs *FlagSet) IntVar(p *int, name, env string, value int, usage string) {
	fs.FlagSet.IntVar(p, name, value, usage)
	fs.bind(name, env)
}

// Int64Var defines an int64 flag -name, also set by the variable env.
func (fs *FlagSet) Int64Var(p *int64, name, env string, value int64, usage string) {
	fs.FlagSet.Int64Var(p, name, value, usage)
	fs.bind(name, env)
}

// Float64Var defines a float flag; NaN and infinities are refused by Parse.
func (fs *FlagSet) Float64Var(p *float64, name, env string, value float64, usage string) {
	fs.FlagSet.Float64Var(p, name, value, usage)
	fs.bind(name, env)
	if fs.floats == nil {
		fs.floats = map[string]*float64{}
	}
	fs.floats[name] = p
}

// DurationVar defines a duration flag -name, also set by the variable env.
func (fs *FlagSet) DurationVar(p *time.Duration, name, env string, value time.Duration, usage string) {
	fs.FlagSet.DurationVar(p, name, value, usage)
	fs.bind(name, env)
}

// Var binds any flag.Value.
func (fs *FlagSet) Var(v flag.Value, name, env, usage string) {
	fs.FlagSet.Var(v, name, usage)
	fs.bind(name, env)
}

// Parse parses args, then sets each flag not given on the command line from its
// variable, if that is non-empty. Positional arguments are an error. Every error is a
// cli.UsageError, except flag.ErrHelp for -h.
func (fs *FlagSet) Parse(args []string, getenv func(string) string) error {
	return cli.Usage(fs.parse(args, getenv))
}

func (fs *FlagSet) parse(args []string, getenv func(string) string) error {
	if err := fs.FlagSet.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { fs.set[f.Name] = true })
	for _, name := range fs.order {
		if fs.set[name] {
			continue
		}
		env := fs.env[name]
		if v := getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	}
	for _, name := range fs.order {
		p, ok := fs.floats[name]
		if !ok || !(math.IsNaN(*p) || math.IsInf(*p, 0)) {
			continue
		}
		v := fs.Lookup(name).Value.String()
		if fs.set[name] {
			return fmt.Errorf("-%s=%s: not a finite number", name, v)
		}
		return fmt.Errorf("%s=%q: not a finite number", fs.env[name], getenv(fs.env[name]))
	}
	return nil
}

// IsSet reports whether the flag was given on the command line.
func (fs *FlagSet) IsSet(name string) bool { return fs.set[name] }

// Env returns the variable bound to a flag ("" if none).
func (fs *FlagSet) Env(name string) string { return fs.env[name] }
