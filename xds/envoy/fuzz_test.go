package envoy

import (
	"bytes"
	"testing"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

const (
	seedDataplane = `{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1",
"inbound":[{"port":8080,"servicePort":80,"tags":{"kuma.io/service":"web","version":"v1"}},
{"port":9090,"address":"fd00::1","serviceAddress":"::1","tags":{"kuma.io/service":"admin"},"state":"NotReady"}],
"outbound":[{"port":10001,"tags":{"kuma.io/service":"backend"}},{"port":10002,"address":"::1","tags":{"kuma.io/service":"db","version":"v2"}}]}}`
	seedRoute = `{"type":"TrafficRoute","mesh":"default","name":"r","sources":[{"match":{"kuma.io/service":"*"}}],
"destinations":[{"match":{"kuma.io/service":"backend"}}],
"conf":{"split":[{"weight":90,"destination":{"kuma.io/service":"backend","version":"v1"}},{"weight":10,"destination":{"kuma.io/service":"backend","version":"*"}}],
"loadBalancer":{"ringHash":{"hashFunction":"XX_HASH","minRingSize":64}}}}`
	seedTimeout = `{"type":"MeshTimeout","mesh":"default","name":"t","spec":{"targetRef":{"kind":"MeshService","name":"web"},
"from":[{"targetRef":{"kind":"Mesh"},"default":{"connectionTimeout":"2s","idleTimeout":"0s"}}],
"to":[{"targetRef":{"kind":"MeshService","name":"backend"},"default":{"connectionTimeout":"1ms","idleTimeout":"10m"}}]}}`
)

// FuzzGenerate decodes a Dataplane, a TrafficRoute and a MeshTimeout as the
// API would (validated or not) and checks that Generate never panics, that
// whatever it generates passes ValidateAll (tcp_proxy and CLAs included), and
// that it generates the same config twice.
func FuzzGenerate(f *testing.F) {
	f.Add([]byte(seedDataplane), []byte(seedRoute), []byte(seedTimeout), true)
	f.Add([]byte(seedDataplane), []byte(seedRoute), []byte(seedTimeout), false)
	f.Add([]byte(`{"type":"Dataplane","name":"gw","networking":{"address":"web.local","gateway":{"tags":{"kuma.io/service":"edge"}},
"outbound":[{"port":1,"service":"legacy"},{"port":0,"tags":{"kuma.io/service":"x"}},{"backendRef":{"kind":"MeshService","name":"b"}}]}}`),
		[]byte(`{"type":"TrafficRoute","name":"z","sources":[{"match":{}}],"destinations":[{"match":{"kuma.io/service":"*"}}],
"conf":{"split":[{"weight":0,"destination":{"kuma.io/service":"*"}}]}}`),
		[]byte(`{"type":"MeshTimeout","name":"m","spec":{"to":[{"targetRef":{"kind":"Mesh"},"default":{"connectionTimeout":"-5s","idleTimeout":"x"}}]}}`),
		false)
	f.Add([]byte(`{"type":"Dataplane","name":"dp","networking":{"address":"10.0.0.1","inbound":[{"port":70000,"servicePort":0,"tags":{"kuma.io/service":"a:b"}},
{"port":1,"servicePort":65536,"tags":{}},{"port":2,"tags":{"kuma.io/service":"localhost:2"}}],"outbound":[{"port":3,"tags":{"kuma.io/service":"localhost:2"}}]}}`),
		[]byte(`{"type":"Mesh","name":"default"}`), []byte(`null`), true)
	f.Fuzz(func(t *testing.T, dpJSON, routeJSON, timeoutJSON []byte, defaulted bool) {
		dp, err := resource.Decode(dpJSON, resource.JSON)
		if err != nil {
			return
		}
		if defaulted {
			resource.Default(dp)
		}
		in := Input{Proxy: dp}
		if r, err := resource.Decode(routeJSON, resource.JSON); err == nil {
			in.Routes = append(in.Routes, r)
		}
		if r, err := resource.Decode(timeoutJSON, resource.JSON); err == nil {
			in.Timeouts = append(in.Timeouts, r)
		}
		p, err := Generate(in)
		if err != nil {
			if p != nil {
				t.Fatalf("Generate returned both a proxy and %v", err)
			}
			return
		}
		checkProxy(t, p, []*resource.Resource{dp})
		again, err := Generate(in)
		if err != nil {
			t.Fatalf("second Generate: %v", err)
		}
		if !proxyEqual(p, again) || !bytes.Equal(marshalProxy(t, p), marshalProxy(t, again)) {
			t.Fatal("Generate is not deterministic")
		}
	})
}

// FuzzGenerateValues builds the resources from raw values, which reach odd
// addresses, ports, tags, weights and durations far faster than mutating
// JSON does.
func FuzzGenerateValues(f *testing.F) {
	f.Add("10.0.0.1", "", "", uint32(8080), uint32(0), "", "web", "v1", "127.0.0.1", uint32(10001), "backend", uint32(90), uint32(10), "v2", "5s", "1h", "*")
	f.Add("fd00::1", "fd00::2", "::1", uint32(65535), uint32(1), "NotReady", "a:b", "*", "::1", uint32(1), "localhost:1", uint32(0), uint32(0), "", "-1s", "0s", "web")
	f.Add("host.local", "1.2.3.4%eth0", "[::1]", uint32(0), uint32(70000), "Ignored", "", "", "", uint32(0), "", uint32(1<<32-1), uint32(1<<32-1), "*", "x", "", "")
	f.Fuzz(func(t *testing.T, addr, inAddr, svcAddr string, port, svcPort uint32, state, service, version,
		outAddr string, outPort uint32, outService string, w1, w2 uint32, destVersion, connect, idle, source string) {
		dp := &resource.Resource{
			Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: "default", Name: "dp"},
			Spec: &resource.DataplaneSpec{Networking: resource.DataplaneNetworking{
				Address: addr,
				Inbound: []resource.Inbound{
					{Port: port, ServicePort: svcPort, Address: inAddr, ServiceAddress: svcAddr, State: state, Tags: svc(service, "version", version)},
					{Port: svcPort, ServicePort: port, Tags: svc(outService)},
				},
				Outbound: []resource.Outbound{
					{Address: outAddr, Port: outPort, Tags: svc(outService, "version", version)},
					{Address: outAddr, Port: outPort + 1, Service: service},
				},
			}},
		}
		route := trafficRoute("r", epoch, resource.TrafficRouteSpec{
			Sources: sel(svc(source)), Destinations: sel(svc(outService)),
			Conf: &resource.TrafficRouteConf{Split: []resource.TrafficRouteSplit{
				split(w1, svc(outService, "version", destVersion)),
				split(w2, tags("version", destVersion)),
			}},
		})
		dest := trafficRoute("d", epoch, resource.TrafficRouteSpec{
			Sources: sel(svc(source)), Destinations: sel(svc("*")),
			Conf: &resource.TrafficRouteConf{Destination: svc(destVersion, "version", version)},
		})
		c, i := resource.Duration(connect), resource.Duration(idle)
		tm := meshTimeout("t", resource.MeshTimeoutSpec{
			TargetRef: &resource.TargetRef{Kind: resource.KindMeshSubset, Tags: tags("version", version)},
			From:      []resource.MeshTimeoutItem{toMesh(resource.MeshTimeoutConf{ConnectionTimeout: &c, IdleTimeout: &i})},
			To:        []resource.MeshTimeoutItem{toService(outService, resource.MeshTimeoutConf{ConnectionTimeout: &c, IdleTimeout: &i})},
		})
		in := Input{Mesh: mesh(), Proxy: dp, Routes: []*resource.Resource{dest, route}, Timeouts: []*resource.Resource{tm}}
		p, err := Generate(in)
		if err != nil {
			t.Fatalf("Generate of well-typed input: %v", err)
		}
		checkProxy(t, p, []*resource.Resource{dp})
		again, err := Generate(in)
		if err != nil || !proxyEqual(p, again) || !bytes.Equal(marshalProxy(t, p), marshalProxy(t, again)) {
			t.Fatalf("Generate is not deterministic (%v)", err)
		}
	})
}
