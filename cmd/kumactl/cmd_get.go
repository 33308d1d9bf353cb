package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/cmd/kumactl/internal/client"
)

// listAnswer is the REST API's list shape.
type listAnswer struct {
	Total int               `json:"total"`
	Items []json.RawMessage `json:"items"`
	Next  *string           `json:"next"`
}

func newGetCmd(rc *rootContext) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show Kuma resources",
		Long:  `Show Kuma resources.`,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.Root().PersistentPreRunE(cmd, args); err != nil {
				return err
			}
			return validateOutput(output)
		},
	}
	cmd.PersistentFlags().StringVarP(&output, "output", "o", formatTable, "output format: one of table|yaml|json")
	for _, t := range allTypes() {
		cmd.AddCommand(newGetListCmd(rc, t, &output), newGetOneCmd(rc, t, &output))
	}
	return cmd
}

// pageQuery renders ?size=&offset= for the flags that were given.
func pageQuery(size int, offset string) (string, error) {
	if size < 0 {
		return "", fmt.Errorf("invalid value %d for --size: must not be negative", size)
	}
	q := url.Values{}
	if size > 0 {
		q.Set("size", strconv.Itoa(size))
	}
	if offset != "" {
		q.Set("offset", offset)
	}
	if len(q) == 0 {
		return "", nil
	}
	return "?" + q.Encode(), nil
}

func newGetListCmd(rc *rootContext, t *resourceType, output *string) *cobra.Command {
	var size int
	var offset string
	scope := ""
	if !t.Global {
		scope = " in a mesh"
	}
	cmd := &cobra.Command{
		Use:     t.List,
		Aliases: t.ListAliases,
		Short:   fmt.Sprintf("Show %s resources%s", t.Type, scope),
		Long:    fmt.Sprintf("Show %s resources%s.", t.Type, scope),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := pageQuery(size, offset)
			if err != nil {
				return err
			}
			c, err := rc.apiClient()
			if err != nil {
				return err
			}
			var list listAnswer
			raw, err := c.GetJSON(cmd.Context(), t.listPath(rc.currentMesh())+q, &list)
			if err != nil {
				if client.IsNotFound(err) && !t.Global {
					return fmt.Errorf("there is no Mesh with name %q: %w", rc.currentMesh(), err)
				}
				return err
			}
			if *output != formatTable {
				return printRaw(cmd.OutOrStdout(), *output, raw)
			}
			tbl := &table{headers: t.Headers, footer: paginationFooter(list.Next)}
			now := rc.now()
			for i, item := range list.Items {
				var o obj
				if err := json.Unmarshal(item, &o); err != nil {
					return fmt.Errorf("items[%d]: invalid resource from the control plane: %w", i, err)
				}
				tbl.rows = append(tbl.rows, t.Row(o, now))
			}
			return tbl.print(cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&size, "size", 0, "maximum number of elements to return")
	cmd.Flags().StringVar(&offset, "offset", "", "the offset that indicates starting element of the resources list to retrieve")
	return cmd
}

func newGetOneCmd(rc *rootContext, t *resourceType, output *string) *cobra.Command {
	return &cobra.Command{
		Use:     t.Singular + " NAME",
		Aliases: t.SingularAliases,
		Short:   fmt.Sprintf("Show a single %s resource", t.Type),
		Long:    fmt.Sprintf("Show a single %s resource.", t.Type),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name == "" {
				return errors.New("NAME must not be empty")
			}
			c, err := rc.apiClient()
			if err != nil {
				return err
			}
			mesh := rc.currentMesh()
			var o obj
			raw, err := c.GetJSON(cmd.Context(), t.itemPath(mesh, name), &o)
			if err != nil {
				if client.IsNotFound(err) {
					if t.Global {
						return errors.New("No resources found")
					}
					return fmt.Errorf("No resources found in %s mesh", mesh)
				}
				return err
			}
			if *output != formatTable {
				return printRaw(cmd.OutOrStdout(), *output, raw)
			}
			tbl := &table{headers: t.Headers, rows: [][]string{t.Row(o, rc.now())}}
			return tbl.print(cmd.OutOrStdout())
		},
	}
}
