// Package config reads and writes kumactl's configuration file
// ($HOME/.kumactl/config), in Kuma's layout: a list of control planes, a list
// of contexts pointing at them, and the current context. A control plane may
// have several API addresses (one per replica); the first is also written to
// `coordinates.apiServer.url` so the file stays readable by Kuma's kumactl.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// DefaultControlPlaneName is the control plane a fresh configuration points at,
// as in Kuma.
const (
	DefaultControlPlaneName = "local"
	DefaultAPIAddress       = "http://localhost:5681"
	DefaultMesh             = "default"
)

// Config is the whole configuration file.
type Config struct {
	Contexts       []*Context      `json:"contexts"`
	ControlPlanes  []*ControlPlane `json:"controlPlanes"`
	CurrentContext string          `json:"currentContext"`
}

// Context binds a name to a control plane and per-context defaults.
type Context struct {
	Name         string          `json:"name"`
	ControlPlane string          `json:"controlPlane"`
	Defaults     ContextDefaults `json:"defaults"`
}

// ContextDefaults are defaults for flags when they are not given.
type ContextDefaults struct {
	Mesh string `json:"mesh,omitempty"`
}

// ControlPlane is one control plane cluster reachable over its REST API.
type ControlPlane struct {
	Name        string      `json:"name"`
	Coordinates Coordinates `json:"coordinates"`
}

// Coordinates says how to reach a control plane.
type Coordinates struct {
	APIServer APIServer `json:"apiServer"`
}

// APIServer holds the REST API addresses. URL is the first address (Kuma's
// field); URLs lists every replica's address, URL included.
type APIServer struct {
	URL  string   `json:"url"`
	URLs []string `json:"urls,omitempty"`
}

// Addresses returns every API address of the control plane, in order.
func (cp *ControlPlane) Addresses() []string {
	if len(cp.Coordinates.APIServer.URLs) > 0 {
		return append([]string(nil), cp.Coordinates.APIServer.URLs...)
	}
	if cp.Coordinates.APIServer.URL != "" {
		return []string{cp.Coordinates.APIServer.URL}
	}
	return nil
}

// NewControlPlane builds a control plane entry from its addresses.
func NewControlPlane(name string, addresses []string) *ControlPlane {
	cp := &ControlPlane{Name: name}
	if len(addresses) > 0 {
		cp.Coordinates.APIServer.URL = addresses[0]
	}
	if len(addresses) > 1 {
		cp.Coordinates.APIServer.URLs = append([]string(nil), addresses...)
	}
	return cp
}

// Default is the configuration used when no file exists yet: one control
// plane "local" at http://localhost:5681, as Kuma's kumactl does.
func Default() *Config {
	return &Config{
		ControlPlanes: []*ControlPlane{NewControlPlane(DefaultControlPlaneName, []string{DefaultAPIAddress})},
		Contexts: []*Context{{
			Name:         DefaultControlPlaneName,
			ControlPlane: DefaultControlPlaneName,
			Defaults:     ContextDefaults{Mesh: DefaultMesh},
		}},
		CurrentContext: DefaultControlPlaneName,
	}
}

// DefaultPath is $HOME/.kumactl/config.
func DefaultPath() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "."
	}
	return filepath.Join(home, ".kumactl", "config")
}

// Load reads the file at path. A missing file yields Default().
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config file %s: %w", path, err)
	}
	cfg := &Config{}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return nil, fmt.Errorf("parse config file %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Save writes the file atomically (temporary file, then rename), creating
// its directory; the file is private to the user as it may hold addresses of
// internal systems.
func (c *Config) Save(path string) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*")
	if err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config file %s: %w", path, err)
	}
	return nil
}

// Validate checks references between contexts and control planes and the
// addresses, naming the offending entry.
func (c *Config) Validate() error {
	cps := map[string]bool{}
	for i, cp := range c.ControlPlanes {
		if cp == nil || cp.Name == "" {
			return fmt.Errorf("controlPlanes[%d].name: must not be empty", i)
		}
		if cps[cp.Name] {
			return fmt.Errorf("controlPlanes[%d].name: duplicate name %q", i, cp.Name)
		}
		cps[cp.Name] = true
		addrs := cp.Addresses()
		if len(addrs) == 0 {
			return fmt.Errorf("controlPlanes[%d].coordinates.apiServer.url: must not be empty", i)
		}
		for j, a := range addrs {
			if err := ValidateAddress(a); err != nil {
				return fmt.Errorf("controlPlanes[%d].coordinates.apiServer.urls[%d]: %w", i, j, err)
			}
		}
	}
	ctxs := map[string]bool{}
	for i, ctx := range c.Contexts {
		if ctx == nil || ctx.Name == "" {
			return fmt.Errorf("contexts[%d].name: must not be empty", i)
		}
		if ctxs[ctx.Name] {
			return fmt.Errorf("contexts[%d].name: duplicate name %q", i, ctx.Name)
		}
		ctxs[ctx.Name] = true
		if !cps[ctx.ControlPlane] {
			return fmt.Errorf("contexts[%d].controlPlane: there is no control plane %q", i, ctx.ControlPlane)
		}
	}
	if c.CurrentContext != "" && !ctxs[c.CurrentContext] {
		return fmt.Errorf("currentContext: there is no context %q", c.CurrentContext)
	}
	return nil
}

// ValidateAddress checks one API address: an absolute http or https URL with
// a host.
func ValidateAddress(a string) error {
	u, err := url.ParseRequestURI(a)
	if err != nil {
		return fmt.Errorf("%q is not a valid URL: %w", a, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", a)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: host must not be empty", a)
	}
	return nil
}

// ParseAddresses splits a comma-separated list of addresses, trimming blanks
// and trailing slashes, and validates each.
func ParseAddresses(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		a := strings.TrimRight(strings.TrimSpace(part), "/")
		if a == "" {
			continue
		}
		if err := ValidateAddress(a); err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("at least one address is required")
	}
	return out, nil
}

// ControlPlane returns the control plane with this name.
func (c *Config) ControlPlane(name string) (*ControlPlane, bool) {
	for _, cp := range c.ControlPlanes {
		if cp.Name == name {
			return cp, true
		}
	}
	return nil, false
}

// Context returns the context with this name.
func (c *Config) Context(name string) (*Context, bool) {
	for _, ctx := range c.Contexts {
		if ctx.Name == name {
			return ctx, true
		}
	}
	return nil, false
}

// Current returns the current context and its control plane.
func (c *Config) Current() (*Context, *ControlPlane, error) {
	if c.CurrentContext == "" {
		return nil, nil, errors.New(`there is no active Control Plane: add one with "kumactl config control-planes add"`)
	}
	ctx, ok := c.Context(c.CurrentContext)
	if !ok {
		return nil, nil, fmt.Errorf("current context %q does not exist", c.CurrentContext)
	}
	cp, ok := c.ControlPlane(ctx.ControlPlane)
	if !ok {
		return nil, nil, fmt.Errorf("context %q refers to a missing control plane %q", ctx.Name, ctx.ControlPlane)
	}
	return ctx, cp, nil
}

// AddControlPlane adds cp with a context of the same name and makes it
// current. It returns false, changing nothing, if either exists and overwrite
// is false.
func (c *Config) AddControlPlane(cp *ControlPlane, overwrite bool) bool {
	_, cpExists := c.ControlPlane(cp.Name)
	_, ctxExists := c.Context(cp.Name)
	if (cpExists || ctxExists) && !overwrite {
		return false
	}
	replaced := false
	for i, existing := range c.ControlPlanes {
		if existing.Name == cp.Name {
			c.ControlPlanes[i] = cp
			replaced = true
		}
	}
	if !replaced {
		c.ControlPlanes = append(c.ControlPlanes, cp)
	}
	ctx := &Context{Name: cp.Name, ControlPlane: cp.Name, Defaults: ContextDefaults{Mesh: DefaultMesh}}
	replaced = false
	for i, existing := range c.Contexts {
		if existing.Name == cp.Name {
			c.Contexts[i] = ctx
			replaced = true
		}
	}
	if !replaced {
		c.Contexts = append(c.Contexts, ctx)
	}
	c.CurrentContext = cp.Name
	return true
}

// RemoveControlPlane removes the control plane and every context using it.
// If the current context goes away, the first remaining one becomes current.
func (c *Config) RemoveControlPlane(name string) bool {
	if _, ok := c.ControlPlane(name); !ok {
		return false
	}
	cps := c.ControlPlanes[:0]
	for _, cp := range c.ControlPlanes {
		if cp.Name != name {
			cps = append(cps, cp)
		}
	}
	c.ControlPlanes = cps
	ctxs := c.Contexts[:0]
	currentGone := false
	for _, ctx := range c.Contexts {
		if ctx.ControlPlane == name {
			if ctx.Name == c.CurrentContext {
				currentGone = true
			}
			continue
		}
		ctxs = append(ctxs, ctx)
	}
	c.Contexts = ctxs
	if currentGone {
		c.CurrentContext = ""
		if len(c.Contexts) > 0 {
			c.CurrentContext = c.Contexts[0].Name
		}
	}
	return true
}

// Switch makes the context of that name current.
func (c *Config) Switch(name string) bool {
	if _, ok := c.Context(name); !ok {
		return false
	}
	c.CurrentContext = name
	return true
}
