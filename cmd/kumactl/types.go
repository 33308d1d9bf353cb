package main

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// resourceType is what kumactl knows about one kind of resource: its names
// on the command line, its place in the REST API and its table.
type resourceType struct {
	Type     string // "Dataplane"
	Plural   string // URL segment: "dataplanes"
	Global   bool   // lives at /{plural}/{name} (Mesh: /meshes/{name})
	Singular string // kumactl argument for one: "dataplane"
	List     string // kumactl argument for all: "dataplanes"
	// Other accepted spellings of Singular and List.
	SingularAliases []string
	ListAliases     []string
	Headers         []string
	Row             func(item obj, now time.Time) []string
}

func meshRow(item obj, now time.Time) []string {
	return []string{item.str("mesh"), item.str("name"), age(item.time("modificationTime"), now)}
}

func globalRow(item obj, now time.Time) []string {
	return []string{item.str("name"), age(item.time("modificationTime"), now)}
}

// backendOf renders "type/name" of the backend enabled in a mesh section
// (mtls, metrics), or "off".
func backendOf(section obj) string {
	enabled := section.str("enabledBackend")
	if enabled == "" {
		return "off"
	}
	for _, b := range section.list("backends") {
		if b.str("name") == enabled {
			return b.str("type") + "/" + enabled
		}
	}
	return enabled
}

// backendsOf renders every backend of a mesh section (logging, tracing) as
// Kuma does: "type/name" comma-separated, or "off".
func backendsOf(section obj) string {
	var parts []string
	for _, b := range section.list("backends") {
		parts = append(parts, b.str("type")+"/"+b.str("name"))
	}
	if len(parts) == 0 {
		return "off"
	}
	return strings.Join(parts, ", ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// knownTypes lists the types of CONTRACT.md with Kuma's kumactl names.
var knownTypes = []*resourceType{
	{
		Type: "Mesh", Plural: "meshes", Global: true, Singular: "mesh", List: "meshes",
		Headers: []string{"NAME", "mTLS", "METRICS", "LOGGING", "TRACING", "LOCALITY", "ZONEEGRESS", "AGE"},
		Row: func(item obj, now time.Time) []string {
			routing := item.obj("routing")
			return []string{
				item.str("name"),
				backendOf(item.obj("mtls")),
				backendOf(item.obj("metrics")),
				backendsOf(item.obj("logging")),
				backendsOf(item.obj("tracing")),
				onOff(routing.boolean("localityAwareLoadBalancing")),
				onOff(routing.boolean("zoneEgress")),
				age(item.time("modificationTime"), now),
			}
		},
	},
	{
		Type: "Dataplane", Plural: "dataplanes", Singular: "dataplane", List: "dataplanes",
		Headers: []string{"MESH", "NAME", "TAGS", "AGE"},
		Row: func(item obj, now time.Time) []string {
			return []string{item.str("mesh"), item.str("name"), dataplaneTags(item.obj("networking")), age(item.time("modificationTime"), now)}
		},
	},
	{
		Type: "MeshTrafficPermission", Plural: "meshtrafficpermissions",
		Singular: "meshtrafficpermission", List: "meshtrafficpermissions",
		Headers: []string{"MESH", "NAME", "AGE"}, Row: meshRow,
	},
	{
		Type: "MeshTimeout", Plural: "meshtimeouts", Singular: "meshtimeout", List: "meshtimeouts",
		Headers: []string{"MESH", "NAME", "AGE"}, Row: meshRow,
	},
	{
		Type: "TrafficRoute", Plural: "traffic-routes", Singular: "traffic-route", List: "traffic-routes",
		SingularAliases: []string{"trafficroute"}, ListAliases: []string{"trafficroutes"},
		Headers: []string{"MESH", "NAME", "AGE"}, Row: meshRow,
	},
	{
		Type: "ZoneIngress", Plural: "zoneingresses", Global: true, Singular: "zone-ingress", List: "zone-ingresses",
		SingularAliases: []string{"zoneingress"}, ListAliases: []string{"zoneingresses"},
		Headers: []string{"NAME", "ADDRESS", "ADVERTISED-ADDRESS", "AGE"},
		Row: func(item obj, now time.Time) []string {
			n := item.obj("networking")
			addr := n.str("address")
			if p := n.str("port"); addr != "" && p != "" {
				addr += ":" + p
			}
			adv := n.str("advertisedAddress")
			if p := n.str("advertisedPort"); adv != "" && p != "" {
				adv += ":" + p
			}
			return []string{item.str("name"), dash(addr), dash(adv), age(item.time("modificationTime"), now)}
		},
	},
	{
		Type: "ZoneEgress", Plural: "zoneegresses", Global: true, Singular: "zoneegress", List: "zoneegresses",
		SingularAliases: []string{"zone-egress"}, ListAliases: []string{"zone-egresses"},
		Headers: []string{"NAME", "ADDRESS", "AGE"},
		Row: func(item obj, now time.Time) []string {
			n := item.obj("networking")
			addr := n.str("address")
			if p := n.str("port"); addr != "" && p != "" {
				addr += ":" + p
			}
			return []string{item.str("name"), dash(addr), age(item.time("modificationTime"), now)}
		},
	},
	{
		Type: "Zone", Plural: "zones", Global: true, Singular: "zone", List: "zones",
		Headers: []string{"NAME", "ENABLED", "AGE"},
		Row: func(item obj, now time.Time) []string {
			enabled := true
			if _, set := item["enabled"]; set {
				enabled = item.boolean("enabled")
			}
			return []string{item.str("name"), fmt.Sprint(enabled), age(item.time("modificationTime"), now)}
		},
	},
}

// allTypes is knownTypes plus any other type the resource package
// registers, with Kuma's default names (lower-cased type, URL plural).
func allTypes() []*resourceType {
	out := append([]*resourceType(nil), knownTypes...)
	seen := map[string]bool{}
	for _, t := range knownTypes {
		seen[t.Type] = true
	}
	for _, d := range resource.Descriptors() {
		if seen[string(d.Type)] {
			continue
		}
		rt := &resourceType{
			Type:     string(d.Type),
			Plural:   d.Plural,
			Global:   d.Scope == resource.ScopeGlobal,
			Singular: strings.ToLower(string(d.Type)),
			List:     d.Plural,
		}
		if rt.Global {
			rt.Headers, rt.Row = []string{"NAME", "AGE"}, globalRow
		} else {
			rt.Headers, rt.Row = []string{"MESH", "NAME", "AGE"}, meshRow
		}
		out = append(out, rt)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].List < out[j].List })
	return out
}

// typeByName resolves a command-line argument or a `type` field value.
func typeByName(name string) (*resourceType, bool) {
	for _, t := range allTypes() {
		if name == t.Singular || name == t.List || name == t.Type || strings.EqualFold(name, t.Type) {
			return t, true
		}
		for _, a := range append(append([]string(nil), t.SingularAliases...), t.ListAliases...) {
			if name == a {
				return t, true
			}
		}
	}
	return nil, false
}

// typeByKind resolves a `type` field (exact Kuma spelling, "Dataplane").
func typeByKind(kind string) (*resourceType, bool) {
	for _, t := range allTypes() {
		if t.Type == kind {
			return t, true
		}
	}
	return nil, false
}

func singularNames() []string {
	var out []string
	for _, t := range allTypes() {
		out = append(out, t.Singular)
	}
	return out
}

// listPath is the REST path of the collection.
func (t *resourceType) listPath(mesh string) string {
	if t.Global {
		return "/" + t.Plural
	}
	return "/meshes/" + url.PathEscape(mesh) + "/" + t.Plural
}

// itemPath is the REST path of one resource.
func (t *resourceType) itemPath(mesh, name string) string {
	return t.listPath(mesh) + "/" + url.PathEscape(name)
}
