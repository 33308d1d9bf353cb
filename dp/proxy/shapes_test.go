package proxy

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
	"github.com/kuma-ha/kuma-ha/xds/envoy"
)

// The shape walk: every shape of resource xds/envoy can produce goes through
// the wire (deterministic marshal, unmarshal, ValidateAll, as the agent
// decodes xDS) and the built-in proxy's compile (Validate and the plan Apply
// runs). The proxy must accept every shape and honour every field the
// generator sets: each field path the generator sets is either compared with
// the plan by agreesWithPlan, or listed with the reason it has no effect on
// an L4 proxy. A field the generator starts setting that is in neither list
// fails the test, and so does a listed field no case produces any more.
//
// The cases are chosen to drive every branch of xds/envoy that emits a field:
//
//	go test ./dp/proxy -run TestEveryGeneratedShape -coverpkg ./xds/envoy -coverprofile /tmp/c.out
//	go tool cover -func /tmp/c.out

// fieldUse says how the proxy treats one field path the generator sets.
type fieldUse struct {
	compared bool   // agreesWithPlan checks the proxy runs what the field says
	noEffect string // otherwise: why the field changes nothing a built-in proxy does
}

var compared = fieldUse{compared: true}

func noEffect(why string) fieldUse { return fieldUse{noEffect: why} }

const tcpProxyPath = "Listener.filter_chains.filters.typed_config<TcpProxy>"

// generatedFields is every field path (see fieldPaths) xds/envoy sets.
var generatedFields = map[string]fieldUse{
	"Listener.name": compared, // the key the agent stores it under, checked by Validate
	"Listener.address.socket_address.address":    compared,
	"Listener.address.socket_address.port_value": compared,
	"Listener.traffic_direction=INBOUND":         compared,
	"Listener.traffic_direction=OUTBOUND":        compared,
	"Listener.filter_chains":                     compared, // a chain without filters: connections are closed
	"Listener.filter_chains.filters.name": noEffect(
		"Envoy picks a filter by its typed_config type, which Validate checks; the name is informative"),
	tcpProxyPath + ".stat_prefix": noEffect(
		"the built-in proxy keeps no Envoy stats; Status counts by listener name"),
	tcpProxyPath + ".cluster":                           compared,
	tcpProxyPath + ".weighted_clusters.clusters.name":   compared,
	tcpProxyPath + ".weighted_clusters.clusters.weight": compared,
	tcpProxyPath + ".idle_timeout":                      compared,
	"Cluster.name":                                      compared,
	"Cluster.alt_stat_name":                             noEffect("the built-in proxy keeps no Envoy stats; Status reports clusters by name"),
	"Cluster.type=STATIC":                               compared,
	"Cluster.type=EDS":                                  compared,
	"Cluster.connect_timeout":                           compared,
	"Cluster.lb_policy=LEAST_REQUEST":                   compared,
	"Cluster.lb_policy=RANDOM":                          compared,
	"Cluster.lb_policy=RING_HASH":                       compared,
	"Cluster.lb_policy=MAGLEV":                          compared,
	"Cluster.least_request_lb_config.choice_count":      compared,
	"Cluster.ring_hash_lb_config":                       compared, // empty: Envoy's defaults
	"Cluster.ring_hash_lb_config.hash_function=MURMUR_HASH_2": noEffect(
		"tcp_proxy carries no hash_policy, so Envoy hashes a random value: the hash function does not matter"),
	"Cluster.ring_hash_lb_config.minimum_ring_size": noEffect(
		"no hash key (no hash_policy): Envoy picks a random point of the ring, the proxy a random host; " +
			"the ring size only changes how evenly hosts share the ring"),
	"Cluster.ring_hash_lb_config.maximum_ring_size": noEffect("as minimum_ring_size"),
	"Cluster.eds_cluster_config.eds_config.ads":     compared, // endpoints are the ADS load assignment of the cluster's name
	"Cluster.eds_cluster_config.eds_config.resource_api_version=V3": noEffect(
		"the agent only speaks v3 (checked by agreesWithPlan)"),
	"Cluster.load_assignment.cluster_name":                                                      compared,
	"Cluster.load_assignment.endpoints.lb_endpoints.endpoint.address.socket_address.address":    compared,
	"Cluster.load_assignment.endpoints.lb_endpoints.endpoint.address.socket_address.port_value": compared,
	"ClusterLoadAssignment.cluster_name":                                                        compared,
	"ClusterLoadAssignment.endpoints.lb_endpoints.endpoint.address.socket_address.address":      compared,
	"ClusterLoadAssignment.endpoints.lb_endpoints.endpoint.address.socket_address.port_value":   compared,
}

// fieldPaths calls visit with the path of every populated leaf of m: field
// names from the message's type, list elements under their field's name,
// enums as path=VALUE, a google.protobuf.Any by the message it holds
// (path<Type>), durations and wrappers as leaves, and a populated message
// with no field set (an empty filter chain, ads: {}) as a leaf.
func fieldPaths(path string, m protoreflect.Message, visit func(string)) {
	n := 0
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		n++
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len(); i++ {
				valuePaths(p, fd, l.Get(i), visit)
			}
		case fd.IsMap():
			visit(p)
		default:
			valuePaths(p, fd, v, visit)
		}
		return true
	})
	if n == 0 {
		visit(path)
	}
}

func valuePaths(p string, fd protoreflect.FieldDescriptor, v protoreflect.Value, visit func(string)) {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		name := strconv.Itoa(int(v.Enum()))
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			name = string(ev.Name())
		}
		visit(p + "=" + name)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		msg := v.Message()
		switch full := msg.Descriptor().FullName(); {
		case full == "google.protobuf.Any":
			a := msg.Interface().(*anypb.Any)
			inner, err := a.UnmarshalNew()
			if err != nil {
				visit(p + "<undecodable " + a.GetTypeUrl() + ">")
				return
			}
			fieldPaths(p+"<"+string(inner.ProtoReflect().Descriptor().Name())+">", inner.ProtoReflect(), visit)
		case full.Parent() == "google.protobuf": // Duration, the wrappers
			visit(p)
		default:
			fieldPaths(p, msg, visit)
		}
	default:
		visit(p)
	}
}

func messagePaths(m proto.Message) []string {
	var out []string
	r := m.ProtoReflect()
	fieldPaths(string(r.Descriptor().Name()), r, func(p string) { out = append(out, p) })
	return out
}

// Dataplanes behind the services the shape fixtures call, one endpoint shape
// each: advertisedAddress, the inbound's address, networking.address, IPv6,
// an unhealthy and a NotReady inbound left out.
const shapeProvidersA = `type: Dataplane
mesh: default
name: providers-a
networking:
  address: 10.0.1.1
  advertisedAddress: 192.168.0.1
  inbound:
  - {port: 9001, tags: {kuma.io/service: backend, version: v1}}
  - {port: 9002, tags: {kuma.io/service: backend, version: v2}}`

const shapeProvidersB = `type: Dataplane
mesh: default
name: providers-b
networking:
  address: 10.0.1.2
  inbound:
  - {port: 9001, address: 10.0.1.3, tags: {kuma.io/service: backend, version: v1}}
  - {port: 9003, tags: {kuma.io/service: backend-canary}}
  - {port: 9004, tags: {kuma.io/service: db}}
  - {port: 9005, tags: {kuma.io/service: db}, health: {ready: false}}
  - {port: 9006, state: NotReady, tags: {kuma.io/service: db}}
  - {port: 9007, tags: {kuma.io/service: legacy}}`

// shapeProvidersHost is left out of every load assignment: EDS carries IPs.
const shapeProvidersHost = `type: Dataplane
mesh: default
name: providers-host
networking:
  address: 10.0.1.4
  advertisedAddress: db.example
  inbound:
  - {port: 9004, tags: {kuma.io/service: db}}`

const shapeProvidersV6 = `type: Dataplane
mesh: default
name: providers-v6
networking:
  address: fd00::2
  inbound:
  - {port: 9001, tags: {kuma.io/service: backend, version: v2}}`

// shapeSidecar has every inbound and outbound shape of a sidecar.
const shapeSidecar = `type: Dataplane
mesh: default
name: web-1
labels: {team: web}
networking:
  address: 10.0.0.1
  inbound:
  - {port: 8080, servicePort: 80, tags: {kuma.io/service: web, version: v1}}
  - {port: 8081, servicePort: 80, serviceAddress: 10.0.0.9, tags: {kuma.io/service: web-admin}}
  - {port: 8082, address: 10.0.0.2, tags: {kuma.io/service: api}}
  - {port: 8083, servicePort: 8082, address: 10.0.0.2, state: NotReady, tags: {kuma.io/service: api}}
  - {port: 8084, state: Ignored, tags: {kuma.io/service: hidden}}
  - {port: 8085, name: metrics, health: {ready: false}, tags: {kuma.io/service: web-metrics}}
  outbound:
  - {port: 10001, tags: {kuma.io/service: backend}}
  - {port: 10002, address: 127.0.0.2, tags: {kuma.io/service: db}}
  - {port: 10003, tags: {kuma.io/service: nobody}}
  - {port: 10004, tags: {kuma.io/service: backend, version: v2}}
  - {port: 10005, service: legacy}
  - {port: 10006, tags: {kuma.io/service: backend-canary}}`

const shapeIPv6 = `type: Dataplane
mesh: default
name: v6
networking:
  address: fd00::1
  inbound:
  - {port: 8080, serviceAddress: "::1", tags: {kuma.io/service: web}}
  - {port: 8081, address: "fd00::3", servicePort: 8080, serviceAddress: "fd00::4", tags: {kuma.io/service: web}}
  outbound: [{port: 10001, address: "::1", tags: {kuma.io/service: backend}}]`

// shapeOdd has every part xds/envoy leaves out, next to parts it keeps.
const shapeOdd = `type: Dataplane
mesh: default
name: odd
networking:
  address: web.local
  inbound:
  - {port: 8080, tags: {kuma.io/service: web}}
  - {port: 8081, address: 10.0.0.1, tags: {kuma.io/service: web}}
  - {port: 8081, address: 10.0.0.1, servicePort: 9000, tags: {kuma.io/service: web}}
  - {port: 70000, address: 10.0.0.1, tags: {kuma.io/service: web}}
  - {port: 8083, address: 10.0.0.1, servicePort: 70000, tags: {kuma.io/service: web}}
  - {port: 8084, address: 10.0.0.1, serviceAddress: app.local, tags: {kuma.io/service: web}}
  outbound:
  - {port: 1, address: backend.local, tags: {kuma.io/service: backend}}
  - {port: 0, address: 127.0.0.1, tags: {kuma.io/service: backend}}
  - {port: 2, address: 127.0.0.1}
  - {backendRef: {kind: MeshService, name: backend}}
  - {port: 3, address: 127.0.0.1, tags: {kuma.io/service: "localhost:8081"}}
  - {port: 4, address: 127.0.0.1, service: legacy}
  - {port: 4, address: 127.0.0.1, tags: {kuma.io/service: db}}`

const shapeGateway = `type: Dataplane
mesh: default
name: gw
networking:
  address: 10.0.0.1
  gateway: {tags: {kuma.io/service: edge}}
  outbound:
  - {port: 10001, tags: {kuma.io/service: backend}}
  - {port: 10002, tags: {kuma.io/service: db}}`

// trafficRoute is a TrafficRoute from every proxy to service with conf.
func trafficRoute(name, service, conf string) string {
	return fmt.Sprintf(`type: TrafficRoute
mesh: default
name: %s
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: %s}}]
conf: %s`, name, service, conf)
}

func lbRoute(service, lb string) string {
	return trafficRoute("lb-"+service, service, `{destination: {kuma.io/service: `+service+`}, loadBalancer: `+lb+`}`)
}

const shapeSplit = `{split: [
  {weight: 70, destination: {kuma.io/service: backend, version: v1}},
  {weight: 20, destination: {kuma.io/service: backend-canary}},
  {weight: 5, destination: {kuma.io/service: '*', version: v1}},
  {weight: 5, destination: {kuma.io/service: '*', version: '*'}},
  {weight: 0, destination: {kuma.io/service: never}}]}`

func meshTimeout(name, targetRef, entries string) string {
	return fmt.Sprintf("type: MeshTimeout\nmesh: default\nname: %s\nspec:\n  targetRef: %s\n%s", name, targetRef, entries)
}

const (
	toAll   = "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 2s, idleTimeout: 0s}}]"
	fromAll = "  from: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 1500ms, idleTimeout: 10m}}]"
)

func TestEveryGeneratedShape(t *testing.T) {
	cases := []struct {
		name     string
		dp       string
		policies []string
		// unchecked resources skip resource validation: shapes the generator
		// makes of what validation refuses today (the state could hold it
		// from an older release).
		unchecked []string
		// dpUnchecked: dp is not validated either; warnings: how many parts
		// of it xds/envoy leaves out (the rest must still run).
		dpUnchecked bool
		warnings    int
	}{
		{name: "sidecar, no policy", dp: shapeSidecar},
		{name: "ipv6", dp: shapeIPv6},
		{name: "what cannot be Envoy config is left out", dp: shapeOdd, dpUnchecked: true, warnings: 11},
		{name: "gateway", dp: shapeGateway},
		{name: "route to one service", dp: shapeSidecar, policies: []string{
			trafficRoute("to-db", "db", `{destination: {kuma.io/service: db}}`)}},
		{name: "route to a subset", dp: shapeSidecar, policies: []string{
			trafficRoute("to-v1", "backend", `{destination: {kuma.io/service: backend, version: v1}}`)}},
		{name: "weighted split with subsets and wildcards", dp: shapeSidecar, policies: []string{trafficRoute("split", "backend", shapeSplit)}},
		{name: "split whose every weight is zero", dp: shapeSidecar, unchecked: []string{
			trafficRoute("zero", "db", `{split: [{weight: 0, destination: {kuma.io/service: db}}]}`)}},
		{name: "split left with one cluster", dp: shapeSidecar, unchecked: []string{
			trafficRoute("one", "db", `{split: [{weight: 10, destination: {kuma.io/service: ""}}, {weight: 10, destination: {kuma.io/service: db}}]}`)}},
		{name: "route selection", dp: shapeSidecar, policies: []string{
			trafficRoute("a-wide", "'*'", `{destination: {kuma.io/service: backend-canary}}`),
			trafficRoute("b-exact", "db", `{destination: {kuma.io/service: db, version: v1}}`),
			strings.Replace(trafficRoute("c-other-source", "db", `{destination: {kuma.io/service: backend}}`),
				"kuma.io/service: '*'", "kuma.io/service: elsewhere", 1),
			strings.Replace(trafficRoute("d-two-sources", "backend", `{destination: {kuma.io/service: backend, version: v2}}`),
				"[{match: {kuma.io/service: '*'}}]", "[{match: {kuma.io/service: '*'}}, {match: {kuma.io/service: web, version: v1}}]", 1),
		}, unchecked: []string{trafficRoute("e-no-conf", "db", `{}`)}},
		{name: "round robin", dp: shapeSidecar, policies: []string{lbRoute("db", "{roundRobin: {}}")}},
		{name: "least request", dp: shapeSidecar, policies: []string{lbRoute("db", "{leastRequest: {}}")}},
		{name: "least request, choice count", dp: shapeSidecar, policies: []string{lbRoute("db", "{leastRequest: {choiceCount: 5}}")}},
		{name: "ring hash", dp: shapeSidecar, policies: []string{lbRoute("db", "{ringHash: {hashFunction: XX_HASH}}")}},
		{name: "ring hash, murmur and sizes", dp: shapeSidecar, policies: []string{
			lbRoute("db", "{ringHash: {hashFunction: MURMUR_HASH_2, minRingSize: 64, maxRingSize: 1024}}")}},
		{name: "ring hash, sizes above Envoy's limit left out", dp: shapeSidecar, policies: []string{
			lbRoute("db", "{ringHash: {hashFunction: XX_HASH, minRingSize: 1024, maxRingSize: 16777216}}")}},
		{name: "random", dp: shapeSidecar, policies: []string{lbRoute("db", "{random: {}}")}},
		{name: "maglev", dp: shapeSidecar, policies: []string{lbRoute("db", "{maglev: {}}")}},
		{name: "two load balancers (invalid): Envoy's default", dp: shapeSidecar, unchecked: []string{lbRoute("db", "{maglev: {}, random: {}}")}},
		{name: "split with a load balancer", dp: shapeSidecar, policies: []string{
			trafficRoute("split", "backend", strings.Replace(shapeSplit, "{split:", "{loadBalancer: {maglev: {}}, split:", 1))}},
		{name: "mesh timeouts, idle disabled", dp: shapeSidecar, policies: []string{meshTimeout("all", "{kind: Mesh}", toAll+"\n"+fromAll)}},
		{name: "timeouts per service and per inbound", dp: shapeSidecar, policies: []string{
			meshTimeout("all", "{kind: Mesh}", toAll),
			meshTimeout("to-db", "{kind: Mesh}", "  to: [{targetRef: {kind: MeshService, name: db}, default: {connectionTimeout: 250ms, idleTimeout: 90s}}]"),
			meshTimeout("dp", "{kind: Dataplane, name: web-1, sectionName: metrics}", "  from: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1s}}]"),
			meshTimeout("labels", "{kind: Dataplane, labels: {team: web}}", "  from: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 3s}}]"),
			meshTimeout("subset", "{kind: MeshSubset, tags: {version: v1}}", fromAll),
			meshTimeout("svc", "{kind: MeshService, name: api}", "  from: [{targetRef: {kind: Mesh}, default: {idleTimeout: 2m}}]"),
			meshTimeout("svc-subset", "{kind: MeshServiceSubset, name: web, tags: {version: v1}}",
				"  from: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 4s}}]"),
			meshTimeout("sub-second", "{kind: MeshService, name: web-admin}", "  from: [{targetRef: {kind: Mesh}, default: {idleTimeout: 2500ms}}]"),
			meshTimeout("to-sub-second", "{kind: Mesh}", "  to: [{targetRef: {kind: MeshService, name: backend}, default: {idleTimeout: 1.25s}}]"),
			// Policies that select nothing of web-1.
			meshTimeout("x-gateways", "{kind: Mesh, proxyTypes: [Gateway]}", "  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 7s}}]"),
			meshTimeout("x-other-dp", "{kind: Dataplane, name: web-2}", "  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 7s}}]"),
			meshTimeout("x-namespace", "{kind: Dataplane, namespace: kuma-demo}", "  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 7s}}]"),
			meshTimeout("x-subset", "{kind: MeshSubset, tags: {version: v9}}", "  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 7s}}]"),
		}},
		{name: "gateway timeouts", dp: shapeGateway, policies: []string{
			meshTimeout("gw", "{kind: Mesh, proxyTypes: [Gateway]}", toAll),
			trafficRoute("split", "backend", shapeSplit),
			lbRoute("db", "{leastRequest: {choiceCount: 3}}"),
		}},
	}
	providers := []*resource.Resource{decode(t, shapeProvidersA), decode(t, shapeProvidersB), decode(t, shapeProvidersV6), decode(t, shapeProvidersHost)}
	seen := map[string]string{} // field path -> first case that set it
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := envoy.Input{Mesh: decode(t, meshDoc)}
			if tc.dpUnchecked {
				in.Proxy = decodeUnchecked(t, tc.dp)
			} else {
				in.Proxy = decode(t, tc.dp)
			}
			policies := make([]*resource.Resource, 0, len(tc.policies)+len(tc.unchecked))
			for _, doc := range tc.policies {
				policies = append(policies, decode(t, doc))
			}
			for _, doc := range tc.unchecked {
				policies = append(policies, decodeUnchecked(t, doc))
			}
			for _, r := range policies {
				switch r.Type {
				case resource.TypeTrafficRoute:
					in.Routes = append(in.Routes, r)
				case resource.TypeMeshTimeout:
					in.Timeouts = append(in.Timeouts, r)
				default:
					t.Fatalf("fixture of type %s", r.Type)
				}
			}
			sortByName(in.Routes)
			sortByName(in.Timeouts)
			out, err := envoy.Generate(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Warnings) != tc.warnings {
				t.Fatalf("%d parts of the fixture left out, want %d: %q", len(out.Warnings), tc.warnings, out.Warnings)
			}
			cfg := config()
			for _, l := range out.Listeners {
				cfg.Listeners[l.GetName()] = overTheWire(t, l)
			}
			for _, c := range out.Clusters {
				cfg.Clusters[c.GetName()] = overTheWire(t, c)
			}
			for _, ref := range out.Endpoints {
				cfg.Endpoints[ref.Cluster] = overTheWire(t, envoy.LoadAssignment(ref, providers))
			}
			unknown := map[string]bool{}
			for _, m := range allMessages(cfg) {
				for _, p := range messagePaths(m) {
					if _, ok := generatedFields[p]; !ok && !unknown[p] {
						unknown[p] = true
						t.Errorf("xds/envoy sets %s, which the built-in proxy neither honours nor declares without effect "+
							"(add it to generatedFields once the proxy runs it)", p)
					}
					if _, ok := seen[p]; !ok {
						seen[p] = tc.name
					}
				}
			}
			pl, err := compile(cfg)
			if err != nil {
				t.Fatalf("the built-in proxy rejects what xds/envoy generates: %v", err)
			}
			agreesWithPlan(t, cfg, pl)
		})
	}
	if t.Failed() {
		return
	}
	for _, p := range slices.Sorted(maps.Keys(generatedFields)) {
		if _, ok := seen[p]; !ok {
			t.Errorf("no case produces %s: a shape is no longer walked (or no longer generated: drop it)", p)
		}
	}
}

// decodeUnchecked decodes a fixture without validating it.
func decodeUnchecked(t *testing.T, doc string) *resource.Resource {
	t.Helper()
	r, err := resource.Decode([]byte(doc), resource.YAML)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	resource.Default(r)
	return r
}

func sortByName(rs []*resource.Resource) {
	slices.SortFunc(rs, func(a, b *resource.Resource) int { return strings.Compare(a.Name, b.Name) })
}

// overTheWire is m as the agent receives it: marshalled as the xDS server
// does, unmarshalled and validated as the agent's client does.
func overTheWire[M interface {
	proto.Message
	ValidateAll() error
}](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	got := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, got); err != nil {
		t.Fatalf("unmarshal %T: %v", m, err)
	}
	if err := got.ValidateAll(); err != nil {
		t.Fatalf("%T fails Envoy's validation: %v", m, err)
	}
	if !proto.Equal(m, got) {
		t.Fatalf("%T changed over the wire", m)
	}
	return got
}

func allMessages(cfg Config) []proto.Message {
	var out []proto.Message
	for _, k := range slices.Sorted(maps.Keys(cfg.Listeners)) {
		out = append(out, cfg.Listeners[k])
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Clusters)) {
		out = append(out, cfg.Clusters[k])
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Endpoints)) {
		out = append(out, cfg.Endpoints[k])
	}
	return out
}

// agreesWithPlan reads cfg as Envoy would, on its own, and checks the
// proxy's plan (and the runtime clusters and routes built from it) does the
// same: every listener and cluster, every compared field of generatedFields.
func agreesWithPlan(t *testing.T, cfg Config, pl *plan) {
	t.Helper()
	if len(pl.listeners) != len(cfg.Listeners) || len(pl.clusters) != len(cfg.Clusters) {
		t.Fatalf("plan has %d listeners and %d clusters, config %d and %d",
			len(pl.listeners), len(pl.clusters), len(cfg.Listeners), len(cfg.Clusters))
	}
	for name, l := range cfg.Listeners {
		s := pl.listeners[name]
		if s == nil {
			t.Errorf("listener %s: not in the plan", name)
			continue
		}
		if want := hostPortOf(l.GetAddress()); s.addr != want || s.name != name {
			t.Errorf("listener %s: plan %s at %s, config %s", name, s.name, s.addr, want)
		}
		wantDir := map[core.TrafficDirection]string{core.TrafficDirection_INBOUND: DirectionInbound,
			core.TrafficDirection_OUTBOUND: DirectionOutbound}[l.GetTrafficDirection()]
		if s.dir != wantDir {
			t.Errorf("listener %s: direction %q, config %s", name, s.dir, l.GetTrafficDirection())
		}
		want := tcpSpec{reject: true}
		if fs := l.GetFilterChains()[0].GetFilters(); len(fs) > 0 {
			tcp := &tcpv3.TcpProxy{}
			if err := fs[len(fs)-1].GetTypedConfig().UnmarshalTo(tcp); err != nil {
				t.Fatalf("listener %s: %v", name, err)
			}
			want = tcpSpec{cluster: tcp.GetCluster(), idle: DefaultIdleTimeout}
			if d := tcp.GetIdleTimeout(); d != nil {
				want.idle = d.AsDuration()
			}
			for _, cw := range tcp.GetWeightedClusters().GetClusters() {
				want.weighted = append(want.weighted, weightedSpec{cluster: cw.GetName(), weight: cw.GetWeight()})
			}
		}
		if fmt.Sprint(s.tcp) != fmt.Sprint(want) {
			t.Errorf("listener %s: plan routes %+v, config says %+v", name, s.tcp, want)
		}
		r := newRoute(s, map[string]*cluster{}, nil)
		if r.reject != want.reject || r.idle != want.idle || r.dir != wantDir {
			t.Errorf("listener %s: route %+v, config says %+v", name, r, want)
		}
		if r.weighted != nil {
			picks := map[string]int64{}
			for range r.weighted.total {
				_, n := r.pick()
				picks[n]++
			}
			for _, w := range want.weighted {
				if picks[w.cluster] != int64(w.weight) {
					t.Errorf("listener %s: %d of %d connections to %s, weight %d", name, picks[w.cluster], r.weighted.total, w.cluster, w.weight)
				}
			}
		}
	}
	for name, c := range cfg.Clusters {
		s := pl.clusters[name]
		if s == nil {
			t.Errorf("cluster %s: not in the plan", name)
			continue
		}
		connect := DefaultConnectTimeout
		if d := c.GetConnectTimeout(); d != nil {
			connect = d.AsDuration()
		}
		lb, choices := lbRoundRobin, 0
		switch c.GetLbPolicy() {
		case clusterv3.Cluster_ROUND_ROBIN:
		case clusterv3.Cluster_LEAST_REQUEST:
			lb, choices = lbLeastRequest, defaultChoiceCount
			if cc := c.GetLeastRequestLbConfig().GetChoiceCount(); cc != nil {
				choices = int(cc.GetValue())
			}
		case clusterv3.Cluster_RANDOM:
			lb = lbRandom
		case clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV:
			lb = lbHash // no hash key: a random host, as Envoy
		default:
			t.Errorf("cluster %s: lb_policy %s not read here", name, c.GetLbPolicy())
		}
		var cla *endpointv3.ClusterLoadAssignment
		switch c.GetType() {
		case clusterv3.Cluster_STATIC:
			cla = c.GetLoadAssignment()
		case clusterv3.Cluster_EDS:
			if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil ||
				c.GetEdsClusterConfig().GetEdsConfig().GetResourceApiVersion() != core.ApiVersion_V3 {
				t.Errorf("cluster %s: EDS not over ADS v3: %v", name, c.GetEdsClusterConfig())
			}
			cla = cfg.Endpoints[cmp.Or(c.GetEdsClusterConfig().GetServiceName(), name)]
		default:
			t.Errorf("cluster %s: type %s not read here", name, c.GetType())
		}
		var endpoints []string
		for _, loc := range cla.GetEndpoints() {
			for _, lbe := range loc.GetLbEndpoints() {
				endpoints = append(endpoints, hostPortOf(lbe.GetEndpoint().GetAddress()))
			}
		}
		if s.name != name || s.connectTimeout != connect || s.lb != lb || s.choices != choices || !slices.Equal(s.endpoints, endpoints) {
			t.Errorf("cluster %s: plan %+v, config says connect %s, lb %s choices %d, endpoints %v", name, s, connect, lb, choices, endpoints)
		}
		rc := newCluster(s, nil)
		var addrs []string
		for _, e := range rc.endpoints {
			addrs = append(addrs, e.addr)
		}
		if rc.connectTimeout != connect || rc.lb != lb || rc.choices != choices || !slices.Equal(addrs, endpoints) {
			t.Errorf("cluster %s: runs connect %s, lb %s choices %d, endpoints %v; config says %s, %s, %d, %v",
				name, rc.connectTimeout, rc.lb, rc.choices, addrs, connect, lb, choices, endpoints)
		}
	}
}

// hostPortOf is a socket address as ip:port, the IP canonical.
func hostPortOf(a *core.Address) string {
	sa := a.GetSocketAddress()
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return "invalid " + sa.GetAddress()
	}
	return net.JoinHostPort(ip.Unmap().String(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}
