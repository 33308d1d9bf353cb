package envoy

import (
	"fmt"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// benchInput is a Dataplane with 5 inbounds and 20 outbounds, 3 routes and
// 2 timeouts: a busy sidecar.
func benchInput() Input {
	n := netw{Address: "10.0.0.1"}
	for i := range 5 {
		n.Inbound = append(n.Inbound, resource.Inbound{Port: uint32(8080 + i), Tags: svc(fmt.Sprintf("web-%d", i), "version", "v1")})
	}
	for i := range 20 {
		n.Outbound = append(n.Outbound, outbound("127.0.0.1", uint32(10000+i), fmt.Sprintf("svc-%d", i)))
	}
	routes := []*resource.Resource{
		splitRoute("canary", "svc-0", split(90, svc("svc-0", "version", "v1")), split(10, svc("svc-0", "version", "v2"))),
		splitRoute("shift", "svc-1", split(50, svc("svc-1")), split(50, svc("svc-1-next"))),
		trafficRoute("route-all", epoch, resource.TrafficRouteSpec{
			Sources: sel(svc("*")), Destinations: sel(svc("*")),
			Conf: &resource.TrafficRouteConf{Destination: svc("*")},
		}),
	}
	timeouts := []*resource.Resource{
		meshTimeout("default", resource.MeshTimeoutSpec{
			From: []resource.MeshTimeoutItem{toMesh(conf(5*time.Second, 2*time.Hour))},
			To:   []resource.MeshTimeoutItem{toMesh(conf(5*time.Second, time.Hour))},
		}),
		meshTimeout("web-0", resource.MeshTimeoutSpec{
			TargetRef: &resource.TargetRef{Kind: resource.KindMeshService, Name: "web-0"},
			To:        []resource.MeshTimeoutItem{toService("svc-3", conf(time.Second, time.Minute))},
		}),
	}
	return Input{Mesh: mesh(), Proxy: dataplane("web-1", n), Routes: routes, Timeouts: timeouts}
}

func BenchmarkGenerate(b *testing.B) {
	in := benchInput()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadAssignment(b *testing.B) {
	dps := make([]*resource.Resource, 1000)
	for i := range dps {
		dps[i] = dataplane(fmt.Sprintf("backend-%04d", i), netw{
			Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			Inbound: []resource.Inbound{
				inbound(8080, svc("backend", "version", fmt.Sprintf("v%d", i%2+1))),
				inbound(9090, svc("backend-admin")),
			},
		})
	}
	for _, ref := range []EndpointRef{
		{Cluster: "backend", Service: "backend"},
		{Cluster: backendV2, Service: "backend", Tags: tags("version", "v2")},
	} {
		b.Run(ref.Cluster, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if cla := LoadAssignment(ref, dps); len(cla.Endpoints) != 1 {
					b.Fatal("no endpoints")
				}
			}
		})
	}
}
