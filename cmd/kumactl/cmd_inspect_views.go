package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The inspect commands of Kuma's kumactl over the views the control plane
// computes (mesh insights, service insights, zone ingress and egress
// overviews, the policies matching a dataplane), with Kuma's columns.

// meshPolicyColumns are the policy columns of Kuma's inspect meshes table
// and the type each one counts.
var meshPolicyColumns = []struct{ header, typ string }{
	{"TRAFFIC PERMISSIONS", "TrafficPermission"},
	{"TRAFFIC ROUTES", "TrafficRoute"},
	{"CIRCUIT BREAKERS", "CircuitBreaker"},
	{"HEALTH CHECKS", "HealthCheck"},
	{"FAULT INJECTIONS", "FaultInjection"},
	{"EXTERNAL SERVICES", "ExternalService"},
	{"TRAFFIC TRACES", "TrafficTrace"},
	{"TRAFFIC LOGS", "TrafficLog"},
	{"PROXY TEMPLATES", "ProxyTemplate"},
	{"RATE LIMITS", "RateLimit"},
}

func newInspectMeshesCmd(rc *rootContext, output *string) *cobra.Command {
	headers := []string{"MESH", "DATAPLANES"}
	for _, c := range meshPolicyColumns {
		headers = append(headers, c.header)
	}
	return newInspectListCmd(rc, output, inspectList{
		use:   "meshes",
		short: "Inspect Meshes",
		long: `Inspect Meshes: how many of their Dataplanes are online, and how many
policies of each type they hold (Kuma's columns).`,
		path:    func() string { return "/mesh-insights" },
		headers: headers,
		row: func(o obj, _ time.Time) []string {
			dps := o.obj("dataplanes")
			row := []string{o.str("name"), fraction(dps)}
			policies := o.obj("policies")
			for _, c := range meshPolicyColumns {
				row = append(row, strconv.FormatInt(policies.obj(c.typ).num("total"), 10))
			}
			return row
		},
	})
}

// fraction renders Kuma's "online/total" of a proxy count.
func fraction(counts obj) string {
	return fmt.Sprintf("%d/%d", counts.num("online"), counts.num("total"))
}

func newInspectServicesCmd(rc *rootContext, output *string) *cobra.Command {
	return newInspectListCmd(rc, output, inspectList{
		use:   "services",
		short: "Inspect Services",
		long: `Inspect the services of a mesh (--mesh): the kuma.io/service tags of its
Dataplanes' inbounds, and how many of the Dataplanes behind each are online.`,
		path:    func() string { return "/meshes/" + pathSegment(rc.currentMesh()) + "/service-insights" },
		headers: []string{"SERVICE", "STATUS", "DATAPLANES"},
		row: func(o obj, _ time.Time) []string {
			return []string{o.str("name"), serviceStatus(o.str("status")), fraction(o.obj("dataplanes"))}
		},
	})
}

// serviceStatus is Kuma's rendering of a ServiceInsight status.
func serviceStatus(s string) string {
	switch s {
	case "online":
		return "Online"
	case "partially_degraded":
		return "Partially degraded"
	}
	return "Offline"
}

// zoneProxyHeaders are the columns of Kuma's inspect zoneingresses and
// zoneegresses tables.
var zoneProxyHeaders = []string{"NAME", "STATUS", "LAST CONNECTED AGO", "LAST UPDATED AGO", "TOTAL UPDATES", "TOTAL ERRORS", "KUMA-DP VERSION", "ENVOY VERSION"}

// zoneProxyRow renders a ZoneIngressOverview or ZoneEgressOverview, whose
// subscriptions are under insightKey.
func zoneProxyRow(insightKey string) func(o obj, now time.Time) []string {
	return func(o obj, now time.Time) []string {
		subs := summarize(o.obj(insightKey))
		kumaDP, envoy := subs.versions()
		return []string{
			o.str("name"), subs.status(),
			ago(subs.last.time("connectTime"), now), ago(subs.last.obj("status").time("lastUpdateTime"), now),
			strconv.FormatInt(subs.updates, 10), strconv.FormatInt(subs.errs, 10),
			kumaDP, envoy,
		}
	}
}

// ago is age, "never" for an unknown time (Kuma's table.Ago).
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return age(t, now)
}

func newInspectZoneIngressesCmd(rc *rootContext, output *string) *cobra.Command {
	return newInspectZoneProxiesCmd(rc, output, "zoneingresses", "zone-ingresses", "Zone Ingresses", "zoneIngressInsight")
}

func newInspectZoneEgressesCmd(rc *rootContext, output *string) *cobra.Command {
	return newInspectZoneProxiesCmd(rc, output, "zoneegresses", "zone-egresses", "Zone Egresses", "zoneEgressInsight")
}

// newInspectZoneProxiesCmd lists the overviews at /{plural}/_overview.
func newInspectZoneProxiesCmd(rc *rootContext, output *string, plural, alias, what, insightKey string) *cobra.Command {
	return newInspectListCmd(rc, output, inspectList{
		use:     plural,
		aliases: []string{alias},
		short:   "Inspect " + what,
		long:    "Inspect " + what + ": whether their proxy is connected, and its config updates.",
		path:    func() string { return "/" + plural + "/_overview" },
		headers: zoneProxyHeaders,
		row:     zoneProxyRow(insightKey),
	})
}

// Inspection types of inspect dataplane NAME --type, and the path under
// /meshes/{mesh}/dataplanes/{name}/ of each but policies (Kuma's). The
// proxy's own Envoy admin views are not served by this control plane (it
// answers so); kuma-dp --admin-addr serves the built-in proxy's state.
const inspectPolicies = "policies"

var inspectAdminPaths = map[string]string{"config-dump": "xds", "stats": "stats", "clusters": "clusters", "config": "_config"}

func newInspectDataplaneCmd(rc *rootContext, output *string) *cobra.Command {
	var typ string
	var includeEDS bool
	cmd := &cobra.Command{
		Use:   "dataplane NAME",
		Short: "Inspect Dataplane",
		Long: `Inspect one Dataplane of a mesh (--mesh). With --type policies (the
default): the policies that select it, by type, as Kuma's kumactl prints
them (-o yaml|json: the API's answer). config-dump, stats, clusters and
config ask the control plane for the proxy's Envoy admin views and the
config it computes for it, and print them as they come.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, isAdmin := inspectAdminPaths[typ]
			if typ != inspectPolicies && !isAdmin {
				return fmt.Errorf("invalid value %q for --type: must be one of %s", typ, strings.Join(inspectTypes(), "|"))
			}
			if includeEDS && typ != "config-dump" {
				return fmt.Errorf("flag '--include-eds' can be used only when '--type=config-dump'")
			}
			c, err := rc.apiClient()
			if err != nil {
				return err
			}
			base := "/meshes/" + pathSegment(rc.currentMesh()) + "/dataplanes/" + pathSegment(args[0]) + "/"
			if isAdmin {
				path := base + admin
				if typ == "config-dump" {
					path += "?" + url.Values{"include_eds": {strconv.FormatBool(includeEDS)}}.Encode()
				}
				raw, err := c.GetJSON(cmd.Context(), path, nil)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			var ans policiesAnswer
			raw, err := c.GetJSON(cmd.Context(), base+inspectPolicies, &ans)
			if err != nil {
				return err
			}
			if *output != formatTable {
				return printRaw(cmd.OutOrStdout(), *output, raw)
			}
			return ans.print(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&typ, "type", inspectPolicies, "inspection type: one of "+strings.Join(inspectTypes(), "|"))
	cmd.Flags().BoolVar(&includeEDS, "include-eds", false, "include EDS when dumping envoy config for dataplane")
	return cmd
}

func inspectTypes() []string {
	return append([]string{inspectPolicies}, slices.Sorted(maps.Keys(inspectAdminPaths))...)
}

// policiesAnswer is Kuma's answer of /meshes/{mesh}/dataplanes/{name}/policies
// for a sidecar: what each policy attaches to, and the policies by type.
type policiesAnswer struct {
	Kind  string `json:"kind"`
	Items []struct {
		Type            string                       `json:"type"`
		Name            string                       `json:"name"`
		Service         string                       `json:"service"`
		MatchedPolicies map[string][]json.RawMessage `json:"matchedPolicies"`
	} `json:"items"`
}

// print renders the answer as Kuma's kumactl does: one block per attachment
// ("DATAPLANE:", "INBOUND 10.0.0.1:8080:80(web):", "SERVICE backend:"), the
// policy types sorted, the names of each type's policies under it.
func (a *policiesAnswer) print(out io.Writer) error {
	if a.Kind != "" && a.Kind != "SidecarDataplane" {
		return fmt.Errorf("inspect answer of kind %q is not supported: use -o yaml", a.Kind)
	}
	var b strings.Builder
	for _, it := range a.Items {
		switch typ := strings.ToUpper(it.Type); it.Type {
		case "dataplane":
			b.WriteString(typ)
		case "service":
			fmt.Fprintf(&b, "%s %s", typ, it.Name)
		default:
			fmt.Fprintf(&b, "%s %s(%s)", typ, it.Name, it.Service)
		}
		b.WriteString(":\n")
		for _, typ := range slices.Sorted(maps.Keys(it.MatchedPolicies)) {
			fmt.Fprintf(&b, "  %s\n", typ)
			for i, raw := range it.MatchedPolicies[typ] {
				var p obj
				if err := json.Unmarshal(raw, &p); err != nil {
					return fmt.Errorf("matchedPolicies.%s[%d]: invalid answer from the control plane: %w", typ, i, err)
				}
				fmt.Fprintf(&b, "    %s\n", p.str("name"))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(out, b.String())
	return err
}
