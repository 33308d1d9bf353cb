package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kuma-ha/kuma-ha/dp/agent"
	"github.com/kuma-ha/kuma-ha/dp/envoy"
	"github.com/kuma-ha/kuma-ha/dp/proxy"
	"github.com/kuma-ha/kuma-ha/dp/xdsclient"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Config is everything `kuma-dp run` needs, filled by flags and KUMA_*
// environment variables.
type Config struct {
	CPAddress     []string
	DataplaneFile string
	Dataplane     string
	Name          string
	Mesh          string
	StateDir      string
	AdminAddr     string
	Proxy         string // auto, builtin, envoy
	EnvoyBinary   string
	EnvoyAdmin    string
	DrainTime     time.Duration
	Delta         bool
	LogLevel      string
}

// DefaultConfig is what `kuma-dp run` uses for the flags not given.
func DefaultConfig() Config {
	return Config{
		Mesh:       "default",
		StateDir:   "./kuma-dp-state",
		AdminAddr:  "127.0.0.1:9901",
		Proxy:      "auto",
		EnvoyAdmin: "127.0.0.1:9902",
		DrainTime:  30 * time.Second,
		LogLevel:   "info",
	}
}

func (c *Config) bindFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.CPAddress, "cp-address", c.CPAddress, "xDS address(es) of control plane replicas, grpc://host:port, comma-separated; the others are learned from the cluster")
	fs.StringVar(&c.DataplaneFile, "dataplane-file", c.DataplaneFile, "the Dataplane resource (YAML or JSON) to register")
	fs.StringVar(&c.Dataplane, "dataplane", c.Dataplane, "the Dataplane resource inline (YAML or JSON), instead of --dataplane-file")
	fs.StringVar(&c.Name, "name", c.Name, "name of the Dataplane (one already registered, or to check against the file)")
	fs.StringVar(&c.Mesh, "mesh", c.Mesh, "mesh of the Dataplane")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "where the last good config is kept, so a restarted proxy serves it even with every control plane replica down")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "HTTP admin endpoint: /ready, /status, /config")
	fs.StringVar(&c.Proxy, "proxy", c.Proxy, "what carries the traffic: builtin, envoy, or auto (envoy when --envoy-binary is given or envoy is on PATH)")
	fs.StringVar(&c.EnvoyBinary, "envoy-binary", c.EnvoyBinary, "path of the Envoy binary to run instead of the built-in proxy")
	fs.StringVar(&c.EnvoyAdmin, "envoy-admin-addr", c.EnvoyAdmin, "Envoy's own admin address (with Envoy only)")
	fs.DurationVar(&c.DrainTime, "drain-time", c.DrainTime, "on SIGTERM, how long established connections may finish")
	fs.BoolVar(&c.Delta, "delta", c.Delta, "use incremental (delta) xDS instead of state of the world")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
}

// resolved is a validated Config.
type resolved struct {
	nodeID    string
	dataplane []byte // nil without a document
	service   string // the Dataplane's first kuma.io/service, "" without a document
	servers   []string
	envoy     string // Envoy binary, "" for the built-in proxy
}

// Validate checks the flags and reads the Dataplane; every error names the
// flag and what is wrong with it.
func (c *Config) Validate() (*resolved, error) {
	var errs []error
	out := &resolved{}
	badAddress := false
	for _, a := range c.CPAddress {
		if strings.TrimSpace(a) == "" {
			continue
		}
		n, err := xdsclient.NormalizeAddress(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("--cp-address: %w", err))
			badAddress = true
			continue
		}
		out.servers = append(out.servers, n)
	}
	if len(out.servers) == 0 && !badAddress {
		errs = append(errs, errors.New("--cp-address: required: the xDS address of at least one control plane replica, grpc://host:port"))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %q must be debug, info, warn or error", c.LogLevel))
	}
	if c.DrainTime <= 0 {
		errs = append(errs, fmt.Errorf("--drain-time: %s must be positive", c.DrainTime))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir: required"))
	}
	switch c.Proxy {
	case "builtin":
	case "envoy":
		bin := c.EnvoyBinary
		if bin == "" {
			bin = "envoy"
		}
		p, err := exec.LookPath(bin)
		if err != nil {
			errs = append(errs, fmt.Errorf("--proxy envoy: no Envoy binary: %w (give --envoy-binary)", err))
		}
		out.envoy = p
	case "auto":
		if c.EnvoyBinary != "" {
			p, err := exec.LookPath(c.EnvoyBinary)
			if err != nil {
				errs = append(errs, fmt.Errorf("--envoy-binary: %w", err))
			}
			out.envoy = p
		} else if p, err := exec.LookPath("envoy"); err == nil {
			out.envoy = p
		}
	default:
		errs = append(errs, fmt.Errorf("--proxy: %q must be auto, builtin or envoy", c.Proxy))
	}
	nodeID, doc, svc, err := c.dataplane()
	if err != nil {
		errs = append(errs, err)
	}
	out.nodeID, out.dataplane, out.service = nodeID, doc, svc
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// dataplane reads and validates the Dataplane document (as the control
// plane will) and returns the node id, the document to send and its first
// service.
func (c *Config) dataplane() (string, []byte, string, error) {
	var (
		doc  []byte
		flag string
	)
	switch {
	case c.DataplaneFile != "" && c.Dataplane != "":
		return "", nil, "", errors.New("--dataplane-file, --dataplane: give one, not both")
	case c.DataplaneFile != "":
		flag = "--dataplane-file " + c.DataplaneFile
		b, err := os.ReadFile(c.DataplaneFile)
		if err != nil {
			return "", nil, "", fmt.Errorf("--dataplane-file: %w", err)
		}
		doc = b
	case c.Dataplane != "":
		flag, doc = "--dataplane", []byte(c.Dataplane)
	default:
		if c.Name == "" {
			return "", nil, "", errors.New("--dataplane-file, --dataplane or --name: required: the Dataplane to register, or the name of one that exists")
		}
		if c.Mesh == "" {
			return "", nil, "", errors.New("--mesh: required with --name")
		}
		return c.Mesh + "." + c.Name, nil, "", nil
	}
	if len(strings.TrimSpace(string(doc))) == 0 {
		return "", nil, "", fmt.Errorf("%s: empty", flag)
	}
	format := resource.YAML
	if strings.HasPrefix(strings.TrimSpace(string(doc)), "{") {
		format = resource.JSON
	}
	r, err := resource.Decode(doc, format)
	if err != nil {
		return "", nil, "", fmt.Errorf("%s: %w", flag, err)
	}
	if r.Type != resource.TypeDataplane {
		return "", nil, "", fmt.Errorf("%s: type: must be Dataplane, got %q", flag, r.Type)
	}
	if r.Name == "" {
		r.Name = c.Name
	}
	if r.Mesh == "" {
		r.Mesh = c.Mesh
	}
	if c.Name != "" && r.Name != c.Name {
		return "", nil, "", fmt.Errorf("%s: name: %q does not match --name %q", flag, r.Name, c.Name)
	}
	if r.Name == "" {
		return "", nil, "", fmt.Errorf("%s: name: required (or give --name)", flag)
	}
	resource.Default(r)
	if verrs := resource.Validate(r); len(verrs) > 0 {
		return "", nil, "", fmt.Errorf("%s: %w", flag, verrs)
	}
	// The document goes as given: the control plane takes the name and
	// mesh it lacks from the node id, and validates it again.
	return r.Mesh + "." + r.Name, doc, firstService(r), nil
}

// firstService is the kuma.io/service of the Dataplane's first inbound (or
// gateway): Envoy's node cluster.
func firstService(r *resource.Resource) string {
	dp, ok := r.Spec.(*resource.DataplaneSpec)
	if !ok || dp == nil {
		return ""
	}
	for _, in := range dp.Networking.Inbound {
		if svc := in.Tags[resource.ServiceTag]; svc != "" {
			return svc
		}
	}
	if dp.Networking.Gateway != nil {
		return dp.Networking.Gateway.Tags[resource.ServiceTag]
	}
	return ""
}

// run validates cfg, builds the agent and serves until ctx ends.
func run(ctx context.Context, cfg Config, h slog.Handler) error {
	res, err := cfg.Validate()
	if err != nil {
		return err
	}
	log := slog.New(h)
	slog.SetDefault(log)
	state, err := agent.OpenStateDir(cfg.StateDir)
	if err != nil {
		return err
	}
	defer state.Close()
	var engine agent.Engine
	kind := "builtin"
	if res.envoy != "" {
		e, err := envoy.New(envoy.Options{Binary: res.envoy, NodeID: res.nodeID, Cluster: res.service,
			AdminAddr: cfg.EnvoyAdmin, DrainTime: cfg.DrainTime, Logger: log, LogLevel: cfg.LogLevel})
		if err != nil {
			return fmt.Errorf("--envoy-binary %s: %w", res.envoy, err)
		}
		if err := e.Start(ctx); err != nil {
			return fmt.Errorf("--envoy-binary %s: %w", res.envoy, err)
		}
		engine, kind = e, "envoy"
	} else {
		engine = agent.Builtin{Proxy: proxy.New(proxy.Options{Logger: log, DrainTime: cfg.DrainTime})}
	}
	a, err := agent.New(agent.Config{
		NodeID:    res.nodeID,
		Dataplane: res.dataplane,
		Servers:   res.servers,
		Delta:     cfg.Delta,
		State:     state,
		AdminAddr: cfg.AdminAddr,
		Engine:    engine,
		DrainTime: cfg.DrainTime,
		Logger:    log,
	})
	if err != nil {
		// The agent never ran: stop the engine here (Envoy is a process).
		sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTime)
		_ = engine.Shutdown(sctx)
		cancel()
		return err
	}
	log.Info("kuma-dp started", "node", res.nodeID, "cp", res.servers, "admin", a.AdminAddr(), "stateDir", cfg.StateDir, "proxy", kind)
	return a.Run(ctx)
}
