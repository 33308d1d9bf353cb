package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kuma-ha/kuma-ha/cmd/kumactl/internal/config"
)

func newConfigCmd(rc *rootContext) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage kumactl config",
		Long:  `Manage kumactl config.`,
	}
	cp := &cobra.Command{
		Use:     "control-planes",
		Aliases: []string{"control-plane", "cp"},
		Short:   "Manage known Control Planes",
		Long:    `Manage known Control Planes.`,
	}
	cp.AddCommand(
		newConfigControlPlanesAddCmd(rc),
		newConfigControlPlanesListCmd(rc),
		newConfigControlPlanesSwitchCmd(rc),
		newConfigControlPlanesRemoveCmd(rc),
	)
	cmd.AddCommand(cp, newConfigViewCmd(rc))
	return cmd
}

func newConfigControlPlanesAddCmd(rc *rootContext) *cobra.Command {
	var args struct {
		name, address         string
		overwrite, skipVerify bool
		skipCheck             bool
	}
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Add a Control Plane",
		Long: `Add a Control Plane and make it the active one.

--address takes one URL, or the comma-separated URLs of every replica of a
highly-available control plane; requests fail over between them.`,
		Example: `kumactl config control-planes add --name ha --address http://cp-1:5681,http://cp-2:5681,http://cp-3:5681`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(args.name) == "" {
				return errors.New("invalid value for --name: must not be empty")
			}
			addrs, err := config.ParseAddresses(args.address)
			if err != nil {
				return fmt.Errorf("invalid value for --address: %w", err)
			}
			cfg, err := rc.config()
			if err != nil {
				return err
			}
			if !args.overwrite {
				if _, exists := cfg.ControlPlane(args.name); exists {
					return fmt.Errorf("Control Plane with name %q already exists. Use --overwrite to replace an existing one.", args.name)
				}
			}
			if !args.skipCheck {
				if err := checkReachable(cmd.Context(), rc, addrs); err != nil {
					return err
				}
			}
			if !cfg.AddControlPlane(config.NewControlPlane(args.name, addrs), args.overwrite) {
				return fmt.Errorf("Control Plane with name %q already exists. Use --overwrite to replace an existing one.", args.name)
			}
			if err := rc.saveConfig(); err != nil {
				return err
			}
			cmd.Printf("added Control Plane %q\n", args.name)
			cmd.Printf("switched active Control Plane to %q\n", args.name)
			return nil
		},
	}
	cmd.Flags().StringVar(&args.name, "name", "", "reference name for the Control Plane (required)")
	_ = cmd.MarkFlagRequired("name")
	cmd.Flags().StringVar(&args.address, "address", "", "URL of the Control Plane API Server, or comma-separated URLs of its replicas (required). Example: http://localhost:5681")
	_ = cmd.MarkFlagRequired("address")
	cmd.Flags().BoolVar(&args.overwrite, "overwrite", false, "overwrite existing Control Plane with the same reference name")
	cmd.Flags().BoolVar(&args.skipCheck, "skip-check", false, "skip checking that the Control Plane answers")
	cmd.Flags().BoolVar(&args.skipVerify, "skip-verify", false, "skip CA verification (accepted for compatibility with Kuma's kumactl; TLS is not configured by this kumactl)")
	return cmd
}

// checkReachable succeeds when at least one address answers GET / with a
// control plane's index document.
func checkReachable(ctx context.Context, rc *rootContext, addrs []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []string
	for _, a := range addrs {
		c, err := rc.newClient([]string{a})
		if err != nil {
			return err
		}
		resp, err := c.Do(ctx, http.MethodGet, "/", nil, "")
		switch {
		case err != nil:
			errs = append(errs, err.Error())
		case resp.StatusCode != http.StatusOK:
			errs = append(errs, fmt.Sprintf("%s: GET / answered %d", a, resp.StatusCode))
		default:
			var info map[string]any
			if yaml.Unmarshal(resp.Body, &info) != nil || info == nil {
				errs = append(errs, fmt.Sprintf("%s: GET / did not answer with a control plane's index", a))
				continue
			}
			return nil
		}
	}
	return fmt.Errorf("could not connect to the Control Plane API Server at any of --address (use --skip-check to add it anyway): %s", strings.Join(errs, "; "))
}

func newConfigControlPlanesListCmd(rc *rootContext) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List Control Planes",
		Long:  `List Control Planes.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := rc.config()
			if err != nil {
				return err
			}
			active := ""
			if ctx, ok := cfg.Context(cfg.CurrentContext); ok {
				active = ctx.ControlPlane
			}
			t := &table{headers: []string{"ACTIVE", "NAME", "ADDRESS"}}
			for _, cp := range cfg.ControlPlanes {
				mark := ""
				if cp.Name == active {
					mark = "*"
				}
				t.rows = append(t.rows, []string{mark, cp.Name, strings.Join(cp.Addresses(), ",")})
			}
			return t.print(cmd.OutOrStdout())
		},
	}
}

func newConfigControlPlanesSwitchCmd(rc *rootContext) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "switch",
		Short: "Switch active Control Plane",
		Long:  `Switch active Control Plane.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := rc.config()
			if err != nil {
				return err
			}
			if !cfg.Switch(name) {
				return fmt.Errorf("there is no Control Plane with name %q", name)
			}
			if err := rc.saveConfig(); err != nil {
				return err
			}
			cmd.Printf("switched active Control Plane to %q\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "reference name of a Control Plane to switch to (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newConfigControlPlanesRemoveCmd(rc *rootContext) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove a Control Plane",
		Long:  `Remove a Control Plane.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := rc.config()
			if err != nil {
				return err
			}
			if !cfg.RemoveControlPlane(name) {
				return fmt.Errorf("there is no Control Plane with name %q", name)
			}
			if err := rc.saveConfig(); err != nil {
				return err
			}
			cmd.Printf("removed Control Plane %q\n", name)
			if cfg.CurrentContext != "" {
				cmd.Printf("switched active Control Plane to %q\n", cfg.CurrentContext)
			} else {
				cmd.Println(`there is no active Control Plane left; add one with "kumactl config control-planes add"`)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "reference name of the Control Plane (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newConfigViewCmd(rc *rootContext) *cobra.Command {
	return &cobra.Command{
		Use:   "view",
		Short: "Show kumactl config",
		Long:  `Show kumactl config.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := rc.config()
			if err != nil {
				return err
			}
			data, err := yaml.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
}
