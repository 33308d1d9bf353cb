package envoy

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenState is a small mesh: a web proxy, its backends and policies.
func goldenState() (Input, []*resource.Resource) {
	web := dataplane("web-1", netw{Address: "10.0.0.1",
		Inbound: []resource.Inbound{
			{Port: 8080, ServicePort: 80, Tags: svc("web", "version", "v1", "kuma.io/protocol", "tcp")},
			{Port: 9090, Address: "fd00::1", ServiceAddress: "::1", Tags: svc("web-admin")},
		},
		Outbound: []resource.Outbound{
			outbound("127.0.0.1", 10001, "backend"),
			outbound("127.0.0.1", 10002, "db"),
			outbound("::1", 10003, "backend"),
		},
	})
	backends := []*resource.Resource{
		dataplane("backend-1", netw{Address: "10.0.1.1", Inbound: []resource.Inbound{inbound(8080, svc("backend", "version", "v1"))}}),
		dataplane("backend-2", netw{Address: "10.0.1.2", Inbound: []resource.Inbound{inbound(8080, svc("backend", "version", "v2"))}}),
		dataplane("backend-3", netw{Address: "10.0.1.3", Inbound: []resource.Inbound{
			{Port: 8080, Tags: svc("backend", "version", "v2"), State: resource.InboundNotReady}}}),
		dataplane("db-1", netw{Address: "10.0.2.1", AdvertisedAddress: "192.168.2.1", Inbound: []resource.Inbound{inbound(5432, svc("db"))}}),
	}
	routes := []*resource.Resource{
		trafficRoute("backend-canary", epoch, resource.TrafficRouteSpec{
			Sources: sel(svc("web")), Destinations: sel(svc("backend")),
			Conf: &resource.TrafficRouteConf{
				Split:        []resource.TrafficRouteSplit{split(90, svc("backend", "version", "v1")), split(10, svc("backend", "version", "v2"))},
				LoadBalancer: &resource.LoadBalancer{LeastRequest: &resource.LeastRequestLB{ChoiceCount: 2}},
			},
		}),
		trafficRoute("route-all", epoch, resource.TrafficRouteSpec{
			Sources: sel(svc("*")), Destinations: sel(svc("*")),
			Conf: &resource.TrafficRouteConf{Destination: svc("*")},
		}),
	}
	timeouts := []*resource.Resource{
		meshTimeout("mesh-timeout-all-default", resource.MeshTimeoutSpec{
			From: []resource.MeshTimeoutItem{toMesh(conf(5*time.Second, 2*time.Hour))},
			To:   []resource.MeshTimeoutItem{toMesh(conf(5*time.Second, time.Hour))},
		}),
		meshTimeout("web-to-db", resource.MeshTimeoutSpec{
			TargetRef: &resource.TargetRef{Kind: resource.KindMeshService, Name: "web"},
			To:        []resource.MeshTimeoutItem{toService("db", conf(500*time.Millisecond, 10*time.Minute))},
		}),
	}
	all := append([]*resource.Resource{web}, backends...)
	return Input{Mesh: mesh(), Proxy: web, Routes: routes, Timeouts: timeouts}, all
}

// TestGolden writes the whole config of goldenState as JSON, for review in
// diffs. Run with -update after an intended change.
func TestGolden(t *testing.T) {
	in, dps := goldenState()
	p, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	checkProxy(t, p, dps)
	type ref struct {
		Cluster string            `json:"cluster"`
		Service string            `json:"service"`
		Tags    map[string]string `json:"tags,omitempty"`
	}
	doc := struct {
		Listeners       []json.RawMessage `json:"listeners"`
		Clusters        []json.RawMessage `json:"clusters"`
		Endpoints       []ref             `json:"endpoints"`
		LoadAssignments []json.RawMessage `json:"loadAssignments"`
		Warnings        []string          `json:"warnings,omitempty"`
	}{Warnings: p.Warnings}
	js := func(m proto.Message) json.RawMessage {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil { // protojson varies its spacing on purpose
			t.Fatal(err)
		}
		return c.Bytes()
	}
	for _, l := range p.Listeners {
		doc.Listeners = append(doc.Listeners, js(l))
	}
	for _, c := range p.Clusters {
		doc.Clusters = append(doc.Clusters, js(c))
	}
	for _, r := range p.Endpoints {
		doc.Endpoints = append(doc.Endpoints, ref{r.Cluster, r.Service, r.Tags})
		doc.LoadAssignments = append(doc.LoadAssignments, js(LoadAssignment(r, dps)))
	}
	got, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "web.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("config differs from %s (run with -update if intended):\n%s", path, got)
	}
}
