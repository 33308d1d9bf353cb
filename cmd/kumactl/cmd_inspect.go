package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func newInspectCmd(rc *rootContext) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Inspect Kuma resources",
		Long:  `Inspect Kuma resources.`,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.Root().PersistentPreRunE(cmd, args); err != nil {
				return err
			}
			return validateOutput(output)
		},
	}
	cmd.PersistentFlags().StringVarP(&output, "output", "o", formatTable, "output format: one of table|yaml|json")
	cmd.AddCommand(
		newInspectClusterCmd(rc, &output),
		newInspectDataplanesCmd(rc, &output),
		newInspectDataplaneCmd(rc, &output),
		newInspectMeshesCmd(rc, &output),
		newInspectServicesCmd(rc, &output),
		newInspectZoneIngressesCmd(rc, &output),
		newInspectZoneEgressesCmd(rc, &output),
	)
	return cmd
}

// clusterAnswer is GET /cluster.
type clusterAnswer struct {
	Leader   string `json:"leader"`
	Replicas []struct {
		Name         string `json:"name"`
		APIAddress   string `json:"apiAddress"`
		XDSAddress   string `json:"xdsAddress"`
		RaftAddress  string `json:"raftAddress"`
		Role         string `json:"role"`
		Suffrage     string `json:"suffrage"`
		LastIndex    uint64 `json:"lastIndex"`
		AppliedIndex uint64 `json:"appliedIndex"`
		Healthy      bool   `json:"healthy"`
		Version      string `json:"version"`
	} `json:"replicas"`
}

func newInspectClusterCmd(rc *rootContext, output *string) *cobra.Command {
	return &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the replicas of the control plane cluster",
		Long: `Inspect the replicas of the control plane cluster, as the replica that
answers sees them. The leader's row says "leader" in ROLE; when the
answering replica knows of no leader, a note says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rc.apiClient()
			if err != nil {
				return err
			}
			var ans clusterAnswer
			raw, err := c.GetJSON(cmd.Context(), "/cluster", &ans)
			if err != nil {
				return err
			}
			if *output != formatTable {
				return printRaw(cmd.OutOrStdout(), *output, raw)
			}
			tbl := &table{headers: []string{"NAME", "ROLE", "SUFFRAGE", "HEALTHY", "LAST-INDEX", "APPLIED-INDEX", "API", "XDS", "VERSION"}}
			for _, r := range ans.Replicas {
				role := r.Role
				if r.Name == ans.Leader && role != "leader" {
					role += " (leader)"
				}
				tbl.rows = append(tbl.rows, []string{
					r.Name, dash(role), dash(r.Suffrage), strconv.FormatBool(r.Healthy),
					strconv.FormatUint(r.LastIndex, 10), strconv.FormatUint(r.AppliedIndex, 10),
					dash(r.APIAddress), dash(r.XDSAddress), dash(r.Version),
				})
			}
			if ans.Leader == "" {
				tbl.footer = "no leader: the cluster has no quorum or is electing one"
			}
			return tbl.print(cmd.OutOrStdout())
		},
	}
}

func newInspectDataplanesCmd(rc *rootContext, output *string) *cobra.Command {
	return newInspectListCmd(rc, output, inspectList{
		use:   "dataplanes",
		short: "Inspect Dataplanes",
		long: `Inspect Dataplanes: their tags, whether their proxy is connected, since
when, to which control plane replica, and how many config updates it got.`,
		path:    func() string { return "/meshes/" + pathSegment(rc.currentMesh()) + "/dataplanes+insights" },
		headers: []string{"MESH", "NAME", "TAGS", "STATUS", "LAST-CONNECTED", "LAST-UPDATED", "TOTAL-UPDATES", "TOTAL-ERRORS", "REPLICA", "KUMA-DP", "ENVOY"},
		row:     overviewRow,
	})
}

// inspectList is an inspect command that renders one list endpoint of the
// API as a table, one row per item (or prints the answer with -o yaml|json).
type inspectList struct {
	use, short, long string
	aliases          []string
	path             func() string // the list's path, without the page query
	headers          []string
	row              func(item obj, now time.Time) []string
}

func newInspectListCmd(rc *rootContext, output *string, l inspectList) *cobra.Command {
	var size int
	var offset string
	cmd := &cobra.Command{
		Use:     l.use,
		Aliases: l.aliases,
		Short:   l.short,
		Long:    l.long,
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
			raw, err := c.GetJSON(cmd.Context(), l.path()+q, &list)
			if err != nil {
				return err
			}
			if *output != formatTable {
				return printRaw(cmd.OutOrStdout(), *output, raw)
			}
			tbl := &table{headers: l.headers, footer: paginationFooter(list.Next)}
			now := rc.now()
			for i, item := range list.Items {
				var o obj
				if err := json.Unmarshal(item, &o); err != nil {
					return fmt.Errorf("items[%d]: invalid answer from the control plane: %w", i, err)
				}
				tbl.rows = append(tbl.rows, l.row(o, now))
			}
			return tbl.print(cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&size, "size", 0, "maximum number of elements to return")
	cmd.Flags().StringVar(&offset, "offset", "", "the offset that indicates starting element of the resources list to retrieve")
	return cmd
}
