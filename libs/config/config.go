// Package config binds command-line flags to GUARDYN_* environment
// variables: a flag given on the command line wins over the environment,
// which wins over the default.
//
// See https://12factor.net/config.
package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// EnvPrefix starts every Guardyn environment variable.
const EnvPrefix = "GUARDYN_"

// EnvName is the environment variable of flag name: "grpc-addr" →
// "GUARDYN_GRPC_ADDR".
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// Binder registers flags on a FlagSet and, on Parse, fills every flag not
// given on the command line from its environment variable.
type Binder struct {
	fs        *flag.FlagSet
	lookupEnv func(string) (string, bool)
	names     []string
}

// NewBinder binds flags on fs and reads the environment with lookupEnv
// (os.LookupEnv in binaries, a map in tests).
func NewBinder(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) *Binder {
	return &Binder{fs: fs, lookupEnv: lookupEnv}
}

func (b *Binder) usage(name, usage string) string {
	b.names = append(b.names, name)
	return fmt.Sprintf("%s (env %s)", usage, EnvName(name))
}

// String binds a string flag.
func (b *Binder) String(p *string, name, def, usage string) {
	b.fs.StringVar(p, name, def, b.usage(name, usage))
}

// Int binds an int flag.
func (b *Binder) Int(p *int, name string, def int, usage string) {
	b.fs.IntVar(p, name, def, b.usage(name, usage))
}

// Bool binds a bool flag; the environment accepts strconv.ParseBool values.
func (b *Binder) Bool(p *bool, name string, def bool, usage string) {
	b.fs.BoolVar(p, name, def, b.usage(name, usage))
}

// Float64 binds a float64 flag.
func (b *Binder) Float64(p *float64, name string, def float64, usage string) {
	b.fs.Float64Var(p, name, def, b.usage(name, usage))
}

// Duration binds a time.Duration flag ("30s", "5m").
func (b *Binder) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	b.fs.DurationVar(p, name, def, b.usage(name, usage))
}

// Parse parses args, then applies the environment to every bound flag the
// command line did not set. A malformed environment value is an error
// naming the variable, never silently ignored.
func (b *Binder) Parse(args []string) error {
	if err := b.fs.Parse(args); err != nil {
		return err
	}
	set := make(map[string]bool)
	b.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	for _, name := range b.names {
		if set[name] {
			continue
		}
		env := EnvName(name)
		v, ok := b.lookupEnv(env)
		if !ok {
			continue
		}
		if err := b.fs.Set(name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment %s=%q: %w", env, v, err))
		}
	}
	return errors.Join(errs...)
}
