// Command kuma-dp is the data plane proxy agent: it registers its Dataplane
// with the control plane over ADS, fails over between the replicas, and
// carries the traffic with its built-in L4 proxy (or a real Envoy),
// serving its last good config, frozen, while no replica is reachable.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/cmd/internal/flagenv"
	"github.com/kuma-ha/kuma-ha/cmd/internal/version"
)

func main() {
	root := &cobra.Command{Use: "kuma-dp", Short: "Data plane proxy agent", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintf(cmd.OutOrStdout(), "kuma-dp %s\n", version.Get()) },
	}, runCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func runCommand() *cobra.Command {
	cfg := DefaultConfig()
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the data plane proxy",
		Long: `Run the data plane proxy.

It connects over ADS to one of the --cp-address replicas, registers the
Dataplane given with --dataplane-file or --dataplane (or uses the existing
one named by --name and --mesh), learns the other replicas from the cluster,
and fails over between them. The built-in L4 proxy carries the traffic unless
--envoy-binary is given or envoy is on PATH (--proxy chooses explicitly).
The last good config is kept under --state-dir: with every replica down the
proxy keeps serving it, also across its own restarts.

Every flag can also be set by an environment variable KUMA_ + the flag in
upper snake case (--cp-address = KUMA_CP_ADDRESS); flags win.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagenv.Fill(cmd.Flags(), nil, os.Getenv); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return run(ctx, cfg, slogHandler(cfg.LogLevel))
		},
	}
	cfg.bindFlags(cmd.Flags())
	return cmd
}

func slogHandler(level string) slog.Handler {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated in Config.Validate
	return slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})
}
