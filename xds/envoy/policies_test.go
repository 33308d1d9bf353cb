package envoy

import (
	"strings"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// routedCluster generates a web proxy with one outbound to backend and
// returns the cluster its listener sends to.
func routedCluster(t *testing.T, proxy *resource.Resource, routes ...*resource.Resource) string {
	t.Helper()
	p, err := Generate(Input{Mesh: mesh(), Proxy: proxy, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	checkProxy(t, p, nil)
	for _, l := range p.Listeners {
		if l.TrafficDirection.String() == "OUTBOUND" {
			return tcpOf(t, l).GetCluster()
		}
	}
	t.Fatal("no outbound listener")
	return ""
}

func destRoute(name string, created time.Time, sources, dests map[string]string, to string) *resource.Resource {
	return trafficRoute(name, created, resource.TrafficRouteSpec{
		Sources: sel(sources), Destinations: sel(dests),
		Conf: &resource.TrafficRouteConf{Destination: svc(to)},
	})
}

func TestRouteSelection(t *testing.T) {
	proxy := dataplane("web-1", netw{Address: "10.0.0.1",
		Inbound:  []resource.Inbound{inbound(8080, svc("web", "version", "v1", "env", "prod"))},
		Outbound: []resource.Outbound{outbound("", 10001, "backend")},
	})
	later := epoch.Add(time.Hour)
	cases := []struct {
		name   string
		routes []*resource.Resource
		want   string
	}{
		{"no route: the service cluster", nil, "backend"},
		{"source does not match: the service cluster", []*resource.Resource{
			destRoute("r", epoch, svc("other"), svc("backend"), "to-other"),
		}, "backend"},
		{"destination does not match: the service cluster", []*resource.Resource{
			destRoute("r", epoch, svc("web"), svc("db"), "to-db"),
		}, "backend"},
		{"exact beats wildcard", []*resource.Resource{
			destRoute("a", epoch, svc("*"), svc("*"), "wild"),
			destRoute("b", epoch, svc("*"), svc("backend"), "exact"),
		}, "exact"},
		{"more source tags beat fewer", []*resource.Resource{
			destRoute("a", epoch, svc("web"), svc("backend"), "one-tag"),
			destRoute("b", epoch, svc("web", "env", "*"), svc("backend"), "two-tags"),
		}, "two-tags"},
		{"more tags beat more exact tags", []*resource.Resource{
			destRoute("a", epoch, svc("web", "version", "v1"), svc("backend"), "two-exact"),
			destRoute("b", epoch, svc("*", "version", "*", "env", "*"), svc("backend"), "three-wild"),
		}, "three-wild"},
		{"the most specific matching source selector of a route counts", []*resource.Resource{
			trafficRoute("a", epoch, resource.TrafficRouteSpec{
				Sources:      []resource.Selector{{Match: svc("*")}, {Match: svc("web", "env", "prod")}, {Match: svc("nope", "a", "b", "c", "d")}},
				Destinations: sel(svc("backend")),
				Conf:         &resource.TrafficRouteConf{Destination: svc("specific-source")},
			}),
			destRoute("b", epoch, svc("web"), svc("backend"), "plain"),
		}, "specific-source"},
		{"tie: created later wins", []*resource.Resource{
			destRoute("a", later, svc("web"), svc("backend"), "newer"),
			destRoute("b", epoch, svc("web"), svc("backend"), "older"),
		}, "newer"},
		{"tie, same time: first by name wins", []*resource.Resource{
			destRoute("b", epoch, svc("web"), svc("backend"), "second"),
			destRoute("a", epoch, svc("web"), svc("backend"), "first"),
		}, "first"},
		{"a route that cannot route is ignored", []*resource.Resource{
			trafficRoute("a", epoch, resource.TrafficRouteSpec{Sources: sel(svc("web")), Destinations: sel(svc("backend")),
				Conf: &resource.TrafficRouteConf{}}),
			trafficRoute("b", epoch, resource.TrafficRouteSpec{Sources: sel(svc("web")), Destinations: sel(svc("backend"))}),
		}, "backend"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := routedCluster(t, proxy, tc.routes...); got != tc.want {
				t.Errorf("routed to %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("gateway tags match sources", func(t *testing.T) {
		gw := dataplane("gw", netw{Address: "10.0.0.1", Gateway: &resource.Gateway{Tags: svc("edge")},
			Outbound: []resource.Outbound{outbound("", 10001, "backend")}})
		if got := routedCluster(t, gw, destRoute("r", epoch, svc("edge"), svc("backend"), "from-edge")); got != "from-edge" {
			t.Errorf("routed to %q, want from-edge", got)
		}
	})
	t.Run("ignored inbounds still match sources, as in Kuma", func(t *testing.T) {
		dp := dataplane("web-2", netw{Address: "10.0.0.1",
			Inbound:  []resource.Inbound{{Port: 8080, Tags: svc("web"), State: resource.InboundIgnored}},
			Outbound: []resource.Outbound{outbound("", 10001, "backend")}})
		if got := routedCluster(t, dp, destRoute("r", epoch, svc("web"), svc("backend"), "from-web")); got != "from-web" {
			t.Errorf("routed to %q, want from-web", got)
		}
	})
}

// timeoutsOf generates proxy with the policies and returns the connect and
// idle timeouts of the inbound on port 8080 and of the outbound to backend.
func timeoutsOf(t *testing.T, proxy *resource.Resource, policies ...*resource.Resource) (in, out tcpTimeouts) {
	t.Helper()
	p, err := Generate(Input{Mesh: mesh(), Proxy: proxy, Timeouts: policies})
	if err != nil {
		t.Fatal(err)
	}
	checkProxy(t, p, nil)
	cluster := map[string]time.Duration{}
	for _, c := range p.Clusters {
		cluster[c.Name] = c.ConnectTimeout.AsDuration()
	}
	for _, l := range p.Listeners {
		tcp := tcpOf(t, l)
		switch l.Name {
		case "inbound:10.0.0.1:8080":
			in = tcpTimeouts{connect: cluster[tcp.GetCluster()], idle: tcp.IdleTimeout.AsDuration()}
		case "outbound:127.0.0.1:10001":
			out = tcpTimeouts{connect: cluster[tcp.GetCluster()], idle: tcp.IdleTimeout.AsDuration()}
		}
	}
	return in, out
}

func TestMeshTimeoutMatching(t *testing.T) {
	labels := map[string]string{"app": "web", "k8s.kuma.io/namespace": "shop"}
	proxy := dataplane("web-1", netw{Address: "10.0.0.1",
		Inbound: []resource.Inbound{
			{Port: 8080, Name: "http", Tags: svc("web", "version", "v1")},
			{Port: 9090, Tags: svc("admin")},
		},
		Outbound: []resource.Outbound{outbound("", 10001, "backend")},
	})
	proxy.Labels = labels
	gateway := dataplane("gw", netw{Address: "10.0.0.1", Gateway: &resource.Gateway{Tags: svc("edge")},
		Outbound: []resource.Outbound{outbound("", 10001, "backend")}})

	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	policy := func(name string, ref *resource.TargetRef, n int) *resource.Resource {
		return meshTimeout(name, resource.MeshTimeoutSpec{
			TargetRef: ref,
			From:      []resource.MeshTimeoutItem{toMesh(conf(sec(n), sec(n)))},
			To:        []resource.MeshTimeoutItem{toMesh(conf(sec(n), sec(n)))},
		})
	}
	def := defaultTimeouts
	cases := []struct {
		name     string
		proxy    *resource.Resource
		policies []*resource.Resource
		in, out  tcpTimeouts
	}{
		{"no targetRef means Mesh", proxy, []*resource.Resource{policy("p", nil, 1)}, tcpTimeouts{sec(1), sec(1)}, tcpTimeouts{sec(1), sec(1)}},
		{"MeshSubset selecting the inbound", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMeshSubset, Tags: tags("version", "v1")}, 2)},
			tcpTimeouts{sec(2), sec(2)}, tcpTimeouts{sec(2), sec(2)}},
		{"MeshSubset selecting another inbound only: to applies, from does not", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMeshSubset, Tags: svc("admin")}, 2)},
			def, tcpTimeouts{sec(2), sec(2)}},
		{"MeshSubset selecting nothing", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMeshSubset, Tags: tags("version", "v9")}, 2)},
			def, def},
		{"MeshService", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMeshService, Name: "web"}, 3)},
			tcpTimeouts{sec(3), sec(3)}, tcpTimeouts{sec(3), sec(3)}},
		{"MeshServiceSubset not matching the tags", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMeshServiceSubset, Name: "web", Tags: tags("version", "v2")}, 3)},
			def, def},
		{"Dataplane by name", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindDataplane, Name: "web-1"}, 4)},
			tcpTimeouts{sec(4), sec(4)}, tcpTimeouts{sec(4), sec(4)}},
		{"Dataplane by another name", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindDataplane, Name: "web-2"}, 4)},
			def, def},
		{"Dataplane by labels and namespace", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindDataplane, Labels: tags("app", "web")}, 4),
				policy("q", &resource.TargetRef{Kind: resource.KindDataplane, Name: "web-1", Namespace: "other"}, 9)},
			tcpTimeouts{sec(4), sec(4)}, tcpTimeouts{sec(4), sec(4)}},
		{"Dataplane sectionName of another inbound: to applies, from does not", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindDataplane, SectionName: "9090"}, 5)},
			def, tcpTimeouts{sec(5), sec(5)}},
		{"Dataplane sectionName by inbound name", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindDataplane, SectionName: "http"}, 5)},
			tcpTimeouts{sec(5), sec(5)}, tcpTimeouts{sec(5), sec(5)}},
		{"proxyTypes Gateway leaves sidecars alone", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMesh, ProxyTypes: []string{"Gateway"}}, 6)},
			def, def},
		{"proxyTypes Gateway on a gateway", gateway,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMesh, ProxyTypes: []string{"Gateway"}}, 6)},
			tcpTimeouts{}, tcpTimeouts{sec(6), sec(6)}},
		{"MeshGateway and MeshHTTPRoute act on HTTP only", proxy,
			[]*resource.Resource{policy("p", &resource.TargetRef{Kind: resource.KindMeshGateway, Name: "gw"}, 7),
				policy("q", &resource.TargetRef{Kind: resource.KindMeshHTTPRoute, Name: "r"}, 7)},
			def, def},
		{"a more specific kind wins whatever the names", proxy,
			[]*resource.Resource{
				policy("a", &resource.TargetRef{Kind: resource.KindMeshService, Name: "web"}, 8),
				policy("b", &resource.TargetRef{Kind: resource.KindMeshSubset, Tags: tags("version", "v1")}, 2),
				policy("c", &resource.TargetRef{Kind: resource.KindDataplane, Name: "web-1"}, 4),
				policy("d", nil, 1),
			},
			tcpTimeouts{sec(8), sec(8)}, tcpTimeouts{sec(8), sec(8)}},
		{"same kind: the smaller name wins", proxy,
			[]*resource.Resource{policy("b", nil, 2), policy("a", nil, 1), policy("c", nil, 3)},
			tcpTimeouts{sec(1), sec(1)}, tcpTimeouts{sec(1), sec(1)}},
		{"Dataplane: name beats labels", proxy,
			[]*resource.Resource{
				policy("a", &resource.TargetRef{Kind: resource.KindDataplane, Labels: tags("app", "web")}, 1),
				policy("b", &resource.TargetRef{Kind: resource.KindDataplane, Name: "web-1"}, 2),
			},
			tcpTimeouts{sec(2), sec(2)}, tcpTimeouts{sec(2), sec(2)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, out := timeoutsOf(t, tc.proxy, tc.policies...)
			if in != tc.in || out != tc.out {
				t.Errorf("inbound %+v outbound %+v, want %+v and %+v", in, out, tc.in, tc.out)
			}
		})
	}
}

func TestMeshTimeoutMerge(t *testing.T) {
	proxy := dataplane("web-1", netw{Address: "10.0.0.1",
		Inbound:  []resource.Inbound{inbound(8080, svc("web"))},
		Outbound: []resource.Outbound{outbound("", 10001, "backend")},
	})
	// Fields merge one by one: a later (more specific) policy overrides only
	// what it sets; MeshService entries override Mesh entries listed before
	// them, and the other way round.
	general := meshTimeout("b-general", resource.MeshTimeoutSpec{
		To: []resource.MeshTimeoutItem{toMesh(conf(time.Second, time.Minute)), toService("backend", conf(2*time.Second, 0))},
	})
	specific := meshTimeout("a-specific", resource.MeshTimeoutSpec{
		To: []resource.MeshTimeoutItem{toService("backend", conf(0, 3*time.Minute)), toMesh(conf(4*time.Second, 0))},
	})
	_, out := timeoutsOf(t, proxy, general, specific)
	if want := (tcpTimeouts{4 * time.Second, 3 * time.Minute}); out != want {
		t.Errorf("outbound %+v, want %+v", out, want)
	}
	// MeshService entries with labels, sectionName or namespace name real
	// MeshService resources, never a legacy service.
	real := meshTimeout("real", resource.MeshTimeoutSpec{To: []resource.MeshTimeoutItem{
		{TargetRef: resource.TargetRef{Kind: resource.KindMeshService, Name: "backend", SectionName: "http"}, Default: conf(9*time.Second, 0)},
		{TargetRef: resource.TargetRef{Kind: resource.KindMeshService, Labels: tags("app", "backend")}, Default: conf(9*time.Second, 0)},
		{TargetRef: resource.TargetRef{Kind: resource.KindMeshExternalService, Name: "backend"}, Default: conf(9*time.Second, 0)},
	}})
	if _, out := timeoutsOf(t, proxy, real); out != defaultTimeouts {
		t.Errorf("outbound %+v, want the defaults", out)
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	dp := dataplane("web-1", netw{Address: "10.0.0.1", Inbound: []resource.Inbound{inbound(8080, svc("web"))}})
	route := splitRoute("r", "backend", split(1, svc("backend")))
	tm := meshTimeout("t", resource.MeshTimeoutSpec{To: []resource.MeshTimeoutItem{toMesh(conf(time.Second, 0))}})
	other := func(r *resource.Resource) *resource.Resource { c := *r; c.Mesh = "other"; return &c }
	var nilDP *resource.DataplaneSpec
	cases := []struct {
		name string
		in   Input
		want string
	}{
		{"nil proxy", Input{}, "Input.Proxy is nil"},
		{"wrong spec", Input{Proxy: &resource.Resource{Meta: resource.Meta{Name: "x"}, Spec: &resource.MeshSpec{}}}, "Input.Proxy.Spec is *resource.MeshSpec, want *resource.DataplaneSpec"},
		{"nil spec", Input{Proxy: &resource.Resource{Meta: resource.Meta{Name: "x"}}}, "Input.Proxy.Spec is <nil>"},
		{"typed nil spec", Input{Proxy: &resource.Resource{Meta: resource.Meta{Name: "x"}, Spec: nilDP}}, "Input.Proxy.Spec is *resource.DataplaneSpec"},
		{"wrong type", Input{Proxy: &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh}, Spec: dp.Spec}}, `Input.Proxy.Type is "Mesh"`},
		{"mesh spec", Input{Proxy: dp, Mesh: dp}, "Input.Mesh.Spec is *resource.DataplaneSpec, want *resource.MeshSpec"},
		{"other mesh", Input{Proxy: dp, Mesh: &resource.Resource{Meta: resource.Meta{Name: "other"}, Spec: &resource.MeshSpec{}}}, `Input.Mesh is mesh "other"`},
		{"nil route", Input{Proxy: dp, Routes: []*resource.Resource{route, nil}}, "Input.Routes[1] is nil"},
		{"route spec", Input{Proxy: dp, Routes: []*resource.Resource{tm}}, "Input.Routes[0] (MeshTimeout/default/t): spec is *resource.MeshTimeoutSpec, want *resource.TrafficRouteSpec"},
		{"route mesh", Input{Proxy: dp, Routes: []*resource.Resource{other(route)}}, `Input.Routes[0] (TrafficRoute/other/r) is in mesh "other"`},
		{"timeout spec", Input{Proxy: dp, Timeouts: []*resource.Resource{tm, route}}, "Input.Timeouts[1] (TrafficRoute/default/r): spec is *resource.TrafficRouteSpec, want *resource.MeshTimeoutSpec"},
		{"timeout mesh", Input{Proxy: dp, Timeouts: []*resource.Resource{other(tm)}}, `Input.Timeouts[0] (MeshTimeout/other/t) is in mesh "other"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Generate(tc.in)
			if err == nil || p != nil {
				t.Fatalf("Generate = %v, %v; want an error", p, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// A nil Mesh is read as a Mesh with nothing set.
	if _, err := Generate(Input{Proxy: dp}); err != nil {
		t.Errorf("nil Mesh: %v", err)
	}
}
