package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/cmd/kumactl/internal/client"
	"github.com/kuma-ha/kuma-ha/cmd/kumactl/internal/config"
)

// rootContext is the state shared by every command of one invocation.
type rootContext struct {
	now func() time.Time

	args struct {
		configFile string
		mesh       string
		apiTimeout time.Duration
		logLevel   string
	}
	meshFlagSet bool

	cfg    *config.Config
	client *client.Client
	logger *slog.Logger
}

func newRootContext() *rootContext {
	return &rootContext{now: time.Now}
}

func newRootCmd(rc *rootContext) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kumactl",
		Short: "Management tool for the Kuma control plane",
		Long: `Management tool for the Kuma control plane.

It talks to the control plane's REST API; with several replica addresses
configured for a control plane it moves on to the next replica when one
does not answer.`,
		SilenceUsage:  true,
		SilenceErrors: false,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if rc.args.apiTimeout <= 0 {
				return fmt.Errorf("invalid value %s for --api-timeout: must be greater than 0", rc.args.apiTimeout)
			}
			if rc.args.mesh == "" {
				return fmt.Errorf("invalid value for --mesh: must not be empty")
			}
			level, err := parseLogLevel(rc.args.logLevel)
			if err != nil {
				return err
			}
			rc.meshFlagSet = cmd.Flags().Changed("mesh")
			var h slog.Handler = slog.DiscardHandler
			if level != nil {
				h = slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: *level})
			}
			rc.logger = slog.New(h)
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&rc.args.configFile, "config-file", config.DefaultPath(), "path to the configuration file to use")
	cmd.PersistentFlags().StringVarP(&rc.args.mesh, "mesh", "m", config.DefaultMesh, "mesh to use")
	cmd.PersistentFlags().DurationVar(&rc.args.apiTimeout, "api-timeout", client.DefaultRequestTimeout, "the timeout of one request to one control plane replica")
	cmd.PersistentFlags().StringVar(&rc.args.logLevel, "log-level", "off", "log level: one of off|debug|info|warn|error")

	cmd.AddCommand(
		newVersionCmd(rc),
		newConfigCmd(rc),
		newApplyCmd(rc),
		newGetCmd(rc),
		newDeleteCmd(rc),
		newInspectCmd(rc),
	)
	return cmd
}

func parseLogLevel(s string) (*slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(s) {
	case "off", "":
		return nil, nil
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("invalid value %q for --log-level: must be one of off|debug|info|warn|error", s)
	}
	return &l, nil
}

// config loads the configuration file once.
func (rc *rootContext) config() (*config.Config, error) {
	if rc.cfg == nil {
		cfg, err := config.Load(rc.args.configFile)
		if err != nil {
			return nil, err
		}
		rc.cfg = cfg
	}
	return rc.cfg, nil
}

func (rc *rootContext) saveConfig() error {
	return rc.cfg.Save(rc.args.configFile)
}

// currentMesh is --mesh when given, else the context's default mesh.
func (rc *rootContext) currentMesh() string {
	if rc.meshFlagSet {
		return rc.args.mesh
	}
	if cfg, err := rc.config(); err == nil {
		if ctx, _, err := cfg.Current(); err == nil && ctx.Defaults.Mesh != "" {
			return ctx.Defaults.Mesh
		}
	}
	return rc.args.mesh
}

// apiClient returns the client of the active control plane.
func (rc *rootContext) apiClient() (*client.Client, error) {
	if rc.client != nil {
		return rc.client, nil
	}
	cfg, err := rc.config()
	if err != nil {
		return nil, err
	}
	_, cp, err := cfg.Current()
	if err != nil {
		return nil, err
	}
	c, err := rc.newClient(cp.Addresses())
	if err != nil {
		return nil, fmt.Errorf("control plane %q: %w", cp.Name, err)
	}
	rc.client = c
	return c, nil
}

func (rc *rootContext) newClient(addrs []string) (*client.Client, error) {
	logger := rc.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return client.New(addrs, client.Options{RequestTimeout: rc.args.apiTimeout, Logger: logger})
}
