package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/cmd/kumactl/internal/client"
)

func newDeleteCmd(rc *rootContext) *cobra.Command {
	return &cobra.Command{
		Use:   "delete TYPE NAME",
		Short: "Delete Kuma resources",
		Long: fmt.Sprintf(`Delete Kuma resources.

TYPE is one of: %s, replica.
"kumactl delete replica NAME" removes a replica from the control plane cluster.`, strings.Join(singularNames(), ", ")),
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			typeArg, name := args[0], args[1]
			if name == "" {
				return fmt.Errorf("NAME must not be empty")
			}
			var path, label string
			if typeArg == "replica" || typeArg == "replicas" {
				path, label = "/cluster/replicas/"+url.PathEscape(name), "replica"
			} else {
				t, ok := typeByName(typeArg)
				if !ok {
					return fmt.Errorf("unknown TYPE: %s. Allowed values: %s, replica", typeArg, strings.Join(singularNames(), ", "))
				}
				path, label = t.itemPath(rc.currentMesh(), name), t.Type
			}
			c, err := rc.apiClient()
			if err != nil {
				return err
			}
			resp, err := c.Do(cmd.Context(), http.MethodDelete, path, nil, "")
			if err != nil {
				return err
			}
			switch {
			case resp.StatusCode == http.StatusNotFound:
				return fmt.Errorf("there is no %s with name %q", label, name)
			case resp.StatusCode/100 != 2:
				return fmt.Errorf("failed to delete %s with the name %q: %w", label, name, client.APIErrorFrom(resp))
			}
			cmd.Printf("deleted %s %q\n", label, name)
			return nil
		},
	}
}
