package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/cmd/internal/version"
)

func newVersionCmd(rc *rootContext) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print version",
		Long:  `Print the version of kumactl and of the active control plane.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.Printf("Client: Kuma %s\n", version.Get())
			if clientOnly {
				return nil
			}
			c, err := rc.apiClient()
			if err != nil {
				cmd.PrintErrf("Unable to connect to control plane: %v\n", err)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var info struct {
				Product string `json:"product"`
				Version string `json:"version"`
			}
			if _, err := c.GetJSON(ctx, "/", &info); err != nil {
				cmd.PrintErrf("Unable to connect to control plane: %v\n", err)
				return nil
			}
			product := info.Product
			if product == "" {
				product = "Kuma"
			}
			cmd.Println(fmt.Sprintf("Server: %s %s", product, info.Version))
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print the client version only")
	return cmd
}
