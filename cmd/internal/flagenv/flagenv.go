// Package flagenv fills the flags a command line did not set from KUMA_*
// environment variables (KUMA_RAFT_ADDR for --raft-addr) and, for kuma-cp,
// from a YAML file keyed by flag name: flags win over the environment, which
// wins over the file. It is the one place that convention lives.
package flagenv

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// EnvName is the environment variable for a flag: KUMA_ + the flag in
// upper snake case.
func EnvName(flag string) string {
	return "KUMA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Fill sets every flag of fs not set on the command line from its
// environment variable (read with getenv), or else from file (nil for
// none). Flags named in skip are left alone. Errors name the variable or
// key and the flag's complaint.
func Fill(fs *pflag.FlagSet, file map[string]any, getenv func(string) string, skip ...string) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || slices.Contains(skip, f.Name) {
			return
		}
		env := EnvName(f.Name)
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", env, err))
			}
			return
		}
		v, ok := file[f.Name]
		if !ok {
			return
		}
		s, err := scalarString(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("config file key %q: %w", f.Name, err))
			return
		}
		if err := fs.Set(f.Name, s); err != nil {
			errs = append(errs, fmt.Errorf("config file key %q: %w", f.Name, err))
		}
	})
	return errors.Join(errs...)
}

func scalarString(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return strconv.FormatBool(t), nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), nil
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			s, err := scalarString(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("unsupported value %v (want a string, number, bool or list)", v)
	}
}
