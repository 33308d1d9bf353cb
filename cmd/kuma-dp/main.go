// Command kuma-dp is the data plane proxy agent. Its proxy arrives with the
// data plane issue; this release only answers version and --help.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/cmd/internal/version"
)

func main() {
	root := &cobra.Command{Use: "kuma-dp", Short: "Data plane proxy agent", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintf(cmd.OutOrStdout(), "kuma-dp %s\n", version.Get()) },
	}, &cobra.Command{
		Use:   "run",
		Short: "Run the data plane proxy (not available in this release)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("kuma-dp run is not available in this release yet")
		},
	})
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
