package envoy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func decode(t testing.TB, doc string) *resource.Resource {
	t.Helper()
	r, err := resource.Decode([]byte(doc), resource.YAML)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	resource.Default(r)
	if verrs := resource.Validate(r); len(verrs) > 0 {
		t.Fatalf("invalid fixture: %v\n%s", verrs, doc)
	}
	return r
}

var meshDefault = `type: Mesh
name: default`

const webDP = `type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 80
    tags: {kuma.io/service: web, version: v1}
  outbound:
  - port: 10001
    tags: {kuma.io/service: backend}
  - port: 10002
    address: 127.0.0.2
    tags: {kuma.io/service: db}`

// validate checks every resource with ValidateAll, including the TCP proxy
// inside each listener (an Any that the listener's own validation skips).
func validate(t *testing.T, p *Proxy) {
	t.Helper()
	for _, l := range p.Listeners {
		if err := l.ValidateAll(); err != nil {
			t.Fatalf("listener %s: %v", l.GetName(), err)
		}
		tcp := tcpOf(t, l)
		if err := tcp.ValidateAll(); err != nil {
			t.Fatalf("tcp proxy of %s: %v", l.GetName(), err)
		}
	}
	for _, c := range p.Clusters {
		if err := c.ValidateAll(); err != nil {
			t.Fatalf("cluster %s: %v", c.GetName(), err)
		}
	}
	if !slices.IsSortedFunc(p.Listeners, func(a, b *listenerv3.Listener) int { return strings.Compare(a.GetName(), b.GetName()) }) ||
		!slices.IsSortedFunc(p.Clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.GetName(), b.GetName()) }) ||
		!slices.IsSortedFunc(p.Endpoints, func(a, b EndpointRef) int { return strings.Compare(a.Cluster, b.Cluster) }) {
		t.Fatal("output not sorted")
	}
}

func tcpOf(t *testing.T, l *listenerv3.Listener) *tcpv3.TcpProxy {
	t.Helper()
	tcp := &tcpv3.TcpProxy{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(tcp); err != nil {
		t.Fatalf("listener %s: %v", l.GetName(), err)
	}
	return tcp
}

func names[T interface{ GetName() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.GetName())
	}
	return out
}

func generate(t *testing.T, dp string, policies ...string) *Proxy {
	t.Helper()
	in := Input{Mesh: decode(t, meshDefault), Proxy: decode(t, dp)}
	for _, p := range policies {
		r := decode(t, p)
		switch r.Type {
		case resource.TypeTrafficRoute:
			in.Routes = append(in.Routes, r)
		case resource.TypeMeshTimeout:
			in.Timeouts = append(in.Timeouts, r)
		}
	}
	p, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	validate(t, p)
	again, _ := Generate(in)
	for i := range p.Listeners {
		a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p.Listeners[i])
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(again.Listeners[i])
		if string(a) != string(b) {
			t.Fatal("not deterministic")
		}
	}
	return p
}

func TestPlainDataplane(t *testing.T) {
	p := generate(t, webDP)
	if got := names(p.Listeners); !slices.Equal(got, []string{"inbound:10.0.0.1:8080", "outbound:127.0.0.1:10001", "outbound:127.0.0.2:10002"}) {
		t.Fatalf("listeners %v", got)
	}
	if got := names(p.Clusters); !slices.Equal(got, []string{"backend", "db", "localhost:80"}) {
		t.Fatalf("clusters %v", got)
	}
	if len(p.Endpoints) != 2 || p.Endpoints[0].Cluster != "backend" || p.Endpoints[1].Service != "db" {
		t.Fatalf("endpoints %v", p.Endpoints)
	}
	in := tcpOf(t, p.Listeners[0])
	if in.GetCluster() != "localhost:80" || in.GetIdleTimeout().AsDuration() != DefaultIdleTimeout {
		t.Fatalf("inbound tcp proxy %v", in)
	}
	if c := p.Clusters[0]; c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil ||
		c.GetConnectTimeout().AsDuration() != DefaultConnectTimeout {
		t.Fatalf("backend cluster %v", c)
	}
}

func TestTrafficRouteSplit(t *testing.T) {
	route := `type: TrafficRoute
mesh: default
name: split
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend}}]
conf:
  split:
  - weight: 90
    destination: {kuma.io/service: backend, version: v1}
  - weight: 10
    destination: {kuma.io/service: backend-canary}
  - weight: 0
    destination: {kuma.io/service: never}`
	p := generate(t, webDP, route)
	tcp := tcpOf(t, p.Listeners[1])
	wc := tcp.GetWeightedClusters().GetClusters()
	if len(wc) != 2 {
		t.Fatalf("weighted clusters %v", wc)
	}
	got := map[string]uint32{}
	for _, c := range wc {
		got[c.GetName()] = c.GetWeight()
	}
	var subset string
	for _, e := range p.Endpoints {
		if e.Service == "backend" && e.Tags["version"] == "v1" {
			subset = e.Cluster
		}
	}
	if subset == "" || !strings.HasPrefix(subset, "backend-") || got[subset] != 90 || got["backend-canary"] != 10 {
		t.Fatalf("split %v, endpoints %v", got, p.Endpoints)
	}
	// The db outbound is not selected by the route.
	if tcpOf(t, p.Listeners[2]).GetCluster() != "db" {
		t.Fatal("route applied to another destination")
	}

	// A more specific route wins; a destination route picks one cluster.
	specific := `type: TrafficRoute
mesh: default
name: z-specific
sources: [{match: {kuma.io/service: web}}]
destinations: [{match: {kuma.io/service: backend}}]
conf:
  destination: {kuma.io/service: backend, version: v2}`
	p = generate(t, webDP, route, specific)
	if c := tcpOf(t, p.Listeners[1]).GetCluster(); !strings.HasPrefix(c, "backend-") {
		t.Fatalf("specific route not applied: %q", c)
	}
	// A route whose sources do not match is ignored.
	other := strings.Replace(specific, "kuma.io/service: web}", "kuma.io/service: api}", 1)
	p = generate(t, webDP, other)
	if c := tcpOf(t, p.Listeners[1]).GetCluster(); c != "backend" {
		t.Fatalf("foreign route applied: %q", c)
	}
}

func TestMeshTimeout(t *testing.T) {
	mesh := `type: MeshTimeout
mesh: default
name: mesh-wide
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 2s, idleTimeout: 30m}
  from:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 10m, connectionTimeout: 1s}`
	svc := `type: MeshTimeout
mesh: default
name: to-db
spec:
  targetRef: {kind: MeshService, name: web}
  to:
  - targetRef: {kind: MeshService, name: db}
    default: {connectionTimeout: 7s}`
	p := generate(t, webDP, mesh, svc)
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range p.Clusters {
		clusters[c.GetName()] = c
	}
	if d := clusters["backend"].GetConnectTimeout().AsDuration(); d != 2*time.Second {
		t.Fatalf("backend connect timeout %s", d)
	}
	if d := clusters["db"].GetConnectTimeout().AsDuration(); d != 7*time.Second {
		t.Fatalf("db connect timeout %s", d)
	}
	if d := clusters["localhost:80"].GetConnectTimeout().AsDuration(); d != time.Second {
		t.Fatalf("local connect timeout %s", d)
	}
	if d := tcpOf(t, p.Listeners[1]).GetIdleTimeout().AsDuration(); d != 30*time.Minute {
		t.Fatalf("outbound idle %s", d)
	}
	if d := tcpOf(t, p.Listeners[0]).GetIdleTimeout().AsDuration(); d != 10*time.Minute {
		t.Fatalf("inbound idle %s", d)
	}
	// A policy for another service's proxies does not apply.
	p = generate(t, webDP, strings.Replace(svc, "name: web}", "name: api}", 1))
	for _, c := range p.Clusters {
		if c.GetConnectTimeout().AsDuration() != DefaultConnectTimeout {
			t.Fatalf("%s: %s", c.GetName(), c.GetConnectTimeout().AsDuration())
		}
	}
}

func TestShapes(t *testing.T) {
	for name, dp := range map[string]string{
		"ipv6": `type: Dataplane
mesh: default
name: v6
networking:
  address: fd00::1
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]
  outbound: [{port: 10001, address: "::1", tags: {kuma.io/service: backend}}]`,
		"service address and shared service port": `type: Dataplane
mesh: default
name: multi
networking:
  address: 10.0.0.1
  inbound:
  - {port: 8080, servicePort: 80, serviceAddress: 10.0.0.9, tags: {kuma.io/service: web}}
  - {port: 8081, servicePort: 80, tags: {kuma.io/service: web-admin}}
  - {port: 8082, address: 10.0.0.2, state: Ignored, tags: {kuma.io/service: hidden}}`,
		"gateway": `type: Dataplane
mesh: default
name: gw
networking:
  address: 10.0.0.1
  gateway: {tags: {kuma.io/service: edge}}
  outbound: [{port: 10001, tags: {kuma.io/service: web}}]`,
		"inbound only": `type: Dataplane
mesh: default
name: only
networking:
  address: 10.0.0.1
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]`,
	} {
		t.Run(name, func(t *testing.T) {
			p := generate(t, dp)
			if len(p.Listeners) == 0 {
				t.Fatal("no listeners")
			}
		})
	}
	if _, err := Generate(Input{}); err == nil {
		t.Fatal("nil proxy accepted")
	}
	if _, err := Generate(Input{Proxy: decode(t, meshDefault)}); err == nil || !strings.Contains(err.Error(), "not a Dataplane") {
		t.Fatalf("wrong spec: %v", err)
	}
}

func TestLoadAssignment(t *testing.T) {
	var dps []*resource.Resource
	for i, extra := range []string{
		"",
		"\n    health: {ready: false}",
		"\n    state: NotReady",
		"\n    address: 10.9.9.9",
	} {
		dps = append(dps, decode(t, fmt.Sprintf(`type: Dataplane
mesh: default
name: b-%d
networking:
  address: 10.0.0.%d
  inbound:
  - port: 8080
    tags: {kuma.io/service: backend, version: v%d}%s`, i, i+1, i%2+1, extra)))
	}
	cla := LoadAssignment(EndpointRef{Cluster: "backend", Service: "backend"}, dps)
	if err := cla.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range cla.GetEndpoints()[0].GetLbEndpoints() {
		sa := e.GetEndpoint().GetAddress().GetSocketAddress()
		got = append(got, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
	}
	if !slices.Equal(got, []string{"10.0.0.1:8080", "10.9.9.9:8080"}) {
		t.Fatalf("endpoints %v", got)
	}
	sub := LoadAssignment(EndpointRef{Cluster: "backend-x", Service: "backend", Tags: map[string]string{"version": "v2"}}, dps)
	if n := len(sub.GetEndpoints()[0].GetLbEndpoints()); n != 1 {
		t.Fatalf("subset endpoints %d", n)
	}
	empty := LoadAssignment(EndpointRef{Cluster: "none", Service: "none"}, dps)
	if err := empty.ValidateAll(); err != nil || len(empty.GetEndpoints()) != 0 {
		t.Fatalf("empty CLA %v %v", empty, err)
	}
}

func FuzzGenerate(f *testing.F) {
	f.Add(webDP, `type: TrafficRoute
mesh: default
name: r
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: '*'}}]
conf: {split: [{weight: 1, destination: {kuma.io/service: a, x: y}}]}`)
	f.Fuzz(func(t *testing.T, dpDoc, routeDoc string) {
		dp, err := resource.Decode([]byte(dpDoc), resource.YAML)
		if err != nil || dp.Type != resource.TypeDataplane {
			return
		}
		resource.Default(dp)
		if len(resource.Validate(dp)) > 0 {
			return
		}
		in := Input{Proxy: dp}
		if r, err := resource.Decode([]byte(routeDoc), resource.YAML); err == nil && r.Type == resource.TypeTrafficRoute && len(resource.Validate(r)) == 0 {
			in.Routes = append(in.Routes, r)
		}
		p, err := Generate(in)
		if err != nil {
			return
		}
		validate(t, p)
		for _, ref := range p.Endpoints {
			if err := LoadAssignment(ref, []*resource.Resource{dp}).ValidateAll(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("type: Dataplane\nmesh: default\nname: big\nnetworking:\n  address: 10.0.0.1\n  inbound:\n")
	for i := range 5 {
		fmt.Fprintf(&sb, "  - {port: %d, tags: {kuma.io/service: svc-%d}}\n", 8080+i, i)
	}
	sb.WriteString("  outbound:\n")
	for i := range 20 {
		fmt.Fprintf(&sb, "  - {port: %d, tags: {kuma.io/service: dst-%d}}\n", 10001+i, i)
	}
	in := Input{Mesh: decode(b, meshDefault), Proxy: decode(b, sb.String())}
	for i := range 3 {
		in.Routes = append(in.Routes, decode(b, fmt.Sprintf(`type: TrafficRoute
mesh: default
name: r-%d
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: dst-%d}}]
conf: {split: [{weight: 50, destination: {kuma.io/service: dst-%d, v: a}}, {weight: 50, destination: {kuma.io/service: dst-%d, v: b}}]}`, i, i, i, i)))
	}
	for i := range 2 {
		in.Timeouts = append(in.Timeouts, decode(b, fmt.Sprintf(`type: MeshTimeout
mesh: default
name: t-%d
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: %ds}}]`, i, i+1)))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadAssignment(b *testing.B) {
	var dps []*resource.Resource
	for i := range 1000 {
		dps = append(dps, decode(b, fmt.Sprintf("type: Dataplane\nmesh: default\nname: b-%04d\nnetworking:\n  address: 10.%d.%d.1\n  inbound: [{port: 8080, tags: {kuma.io/service: backend}}]", i, i/256, i%256)))
	}
	ref := EndpointRef{Cluster: "backend", Service: "backend"}
	b.ReportAllocs()
	for b.Loop() {
		LoadAssignment(ref, dps)
	}
}
