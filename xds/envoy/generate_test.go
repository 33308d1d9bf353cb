package envoy

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

type netw = resource.DataplaneNetworking

func inbound(port uint32, t map[string]string) resource.Inbound {
	return resource.Inbound{Port: port, Tags: t}
}

func outbound(addr string, port uint32, service string, kv ...string) resource.Outbound {
	return resource.Outbound{Address: addr, Port: port, Tags: svc(service, kv...)}
}

// Subset cluster names used in expectations.
var (
	backendV1     = SubsetClusterName("backend", tags("version", "v1"))
	backendV2     = SubsetClusterName("backend", tags("version", "v2"))
	backendV2Zone = SubsetClusterName("backend", tags("version", "v2", "kuma.io/zone", "east"))
)

func TestGenerate(t *testing.T) {
	web := []resource.Inbound{inbound(8080, svc("web", "version", "v1"))}
	cases := []struct {
		name     string
		proxy    *resource.Resource
		routes   []*resource.Resource
		timeouts []*resource.Resource
		want     []string
	}{
		{
			name:  "inbound only",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web}),
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
			},
		},
		{
			name: "outbound only",
			proxy: dataplane("client", netw{Address: "10.0.0.1", Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			want: []string{
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"E backend backend {}",
			},
		},
		{
			name:  "empty dataplane",
			proxy: dataplane("empty", netw{Address: "10.0.0.1"}),
			want:  nil,
		},
		{
			name: "several inbounds and outbounds, sorted by name",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1",
				Inbound: []resource.Inbound{
					{Port: 9090, ServicePort: 9091, Tags: svc("web-admin")},
					inbound(8080, svc("web")),
				},
				Outbound: []resource.Outbound{
					outbound("127.0.0.1", 20000, "redis.svc_6379"),
					outbound("127.0.0.1", 10001, "backend"),
					outbound("127.0.0.2", 10001, "backend"),
				},
			}),
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L inbound:10.0.0.1:9090 INBOUND@10.0.0.1:9090 -> localhost:9091 idle=1h0m0s stat=localhost_9091",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"L outbound:127.0.0.1:20000 OUTBOUND@127.0.0.1:20000 -> redis.svc_6379 idle=1h0m0s stat=redis_svc_6379",
				"L outbound:127.0.0.2:10001 OUTBOUND@127.0.0.2:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"C localhost:9091 STATIC connect=5s to=127.0.0.1:9091",
				"C redis.svc_6379 EDS connect=5s",
				"E backend backend {}",
				"E redis.svc_6379 redis.svc_6379 {}",
			},
		},
		{
			name: "duplicate outbound address and port: the first wins",
			proxy: dataplane("client", netw{Address: "10.0.0.1", Outbound: []resource.Outbound{
				outbound("127.0.0.1", 10001, "backend"),
				outbound("127.0.0.1", 10001, "other"),
			}}),
			want: []string{
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"E backend backend {}",
				"W networking.outbound[1]: listener outbound:127.0.0.1:10001 is already defined by an earlier outbound; skipped",
			},
		},
		{
			name: "serviceAddress",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: []resource.Inbound{
				{Port: 8080, ServicePort: 80, ServiceAddress: "10.0.0.9", Tags: svc("web")},
			}}),
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:80 idle=1h0m0s stat=localhost_80",
				"C localhost:80 STATIC connect=5s to=10.0.0.9:80",
			},
		},
		{
			name: "servicePort shared by inbounds reaching different addresses",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: []resource.Inbound{
				{Port: 8080, ServicePort: 80, Tags: svc("web")},
				{Port: 8081, ServicePort: 80, ServiceAddress: "fd00::9", Tags: svc("web-v6")},
				{Port: 8082, ServicePort: 80, Tags: svc("web-again")},
			}}),
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:127.0.0.1:80 idle=1h0m0s stat=localhost_127_0_0_1_80",
				"L inbound:10.0.0.1:8081 INBOUND@10.0.0.1:8081 -> localhost:[fd00::9]:80 idle=1h0m0s stat=localhost__fd00__9__80",
				"L inbound:10.0.0.1:8082 INBOUND@10.0.0.1:8082 -> localhost:127.0.0.1:80 idle=1h0m0s stat=localhost_127_0_0_1_80",
				"C localhost:127.0.0.1:80 STATIC connect=5s to=127.0.0.1:80",
				"C localhost:[fd00::9]:80 STATIC connect=5s to=fd00::9:80",
			},
		},
		{
			name: "IPv6 addresses",
			proxy: dataplane("web-1", netw{Address: "fd00::1",
				Inbound: []resource.Inbound{
					{Port: 8080, Tags: svc("web")},
					{Port: 9090, Address: "fd00::2", ServiceAddress: "::1", ServicePort: 9091, Tags: svc("admin")},
				},
				Outbound: []resource.Outbound{outbound("::1", 10001, "backend")},
			}),
			want: []string{
				"L inbound:[fd00::1]:8080 INBOUND@fd00::1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L inbound:[fd00::2]:9090 INBOUND@fd00::2:9090 -> localhost:9091 idle=1h0m0s stat=localhost_9091",
				"L outbound:[::1]:10001 OUTBOUND@::1:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"C localhost:9091 STATIC connect=5s to=::1:9091",
				"E backend backend {}",
			},
		},
		{
			name: "ignored inbound gets nothing, not-ready inbound keeps its listener",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: []resource.Inbound{
				{Port: 8080, Tags: svc("web"), State: resource.InboundIgnored},
				{Port: 8081, Tags: svc("web"), State: resource.InboundNotReady},
				{Port: 8082, Tags: svc("web"), Health: &resource.Health{Ready: false}},
			}}),
			want: []string{
				"L inbound:10.0.0.1:8081 INBOUND@10.0.0.1:8081 -> localhost:8081 idle=1h0m0s stat=localhost_8081",
				"L inbound:10.0.0.1:8082 INBOUND@10.0.0.1:8082 -> localhost:8082 idle=1h0m0s stat=localhost_8082",
				"C localhost:8081 STATIC connect=5s to=127.0.0.1:8081",
				"C localhost:8082 STATIC connect=5s to=127.0.0.1:8082",
			},
		},
		{
			name: "what cannot be valid Envoy config is skipped with a warning",
			proxy: dataplane("odd", netw{Address: "web.local",
				Inbound: []resource.Inbound{
					inbound(8080, svc("web")),
					{Port: 8081, Address: "10.0.0.1", Tags: svc("web")},
					{Port: 8081, Address: "10.0.0.1", ServicePort: 9000, Tags: svc("web")},
					{Port: 70000, Address: "10.0.0.1", Tags: svc("web")},
					{Port: 8083, Address: "10.0.0.1", ServiceAddress: "app.local", Tags: svc("web")},
				},
				Outbound: []resource.Outbound{
					{Port: 1, Address: "backend.local", Tags: svc("backend")},
					{Port: 0, Address: "127.0.0.1", Tags: svc("backend")},
					{Port: 2, Address: "127.0.0.1"},
					{BackendRef: &resource.BackendRef{Kind: resource.KindMeshService, Name: "backend"}},
					{Port: 3, Address: "127.0.0.1", Tags: svc("localhost:8081")},
					{Port: 4, Address: "127.0.0.1", Service: "legacy"},
				},
			}),
			want: []string{
				"L inbound:10.0.0.1:8081 INBOUND@10.0.0.1:8081 -> localhost:8081 idle=1h0m0s stat=localhost_8081",
				"L outbound:127.0.0.1:4 OUTBOUND@127.0.0.1:4 -> legacy idle=1h0m0s stat=legacy",
				"C legacy EDS connect=5s",
				"C localhost:8081 STATIC connect=5s to=127.0.0.1:8081",
				"E legacy legacy {}",
				`W networking.inbound[0]: address "web.local" is not an IP address; no listener`,
				"W networking.inbound[3]: port 70000 is out of range; no listener",
				`W networking.inbound[4]: serviceAddress "app.local" is not an IP address; no listener`,
				"W networking.inbound[2]: listener inbound:10.0.0.1:8081 is already defined by an earlier inbound; skipped",
				`W networking.outbound[0]: address "backend.local" is not an IP address; no listener`,
				"W networking.outbound[1]: port 0 is out of range; no listener",
				"W networking.outbound[2]: no kuma.io/service tag; no listener",
				"W networking.outbound[3]: backendRef outbounds are not generated",
				`W networking.outbound[4]: destination cluster "localhost:8081" has the name of a local cluster; no listener`,
			},
		},
		{
			name: "gateway: outbounds only",
			proxy: dataplane("gw", netw{Address: "10.0.0.1",
				Gateway:  &resource.Gateway{Tags: svc("edge")},
				Outbound: []resource.Outbound{outbound("", 10001, "backend")},
			}),
			want: []string{
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"E backend backend {}",
			},
		},
		{
			name: "transparent proxying changes nothing",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web,
				TransparentProxying: &resource.TransparentProxying{RedirectPortInbound: 15006, RedirectPortOutbound: 15001},
			}),
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
			},
		},
		{
			name: "split",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			routes: []*resource.Resource{splitRoute("split", "backend",
				split(90, svc("backend")), split(10, svc("backend-canary")))},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> [backend:90 backend-canary:10] idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"C backend-canary EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"E backend backend {}",
				"E backend-canary backend-canary {}",
			},
		},
		{
			name: "subset split, zero weights dropped, repeats summed",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			routes: []*resource.Resource{splitRoute("split", "backend",
				split(80, svc("backend", "version", "v1")),
				split(0, svc("backend", "version", "v3")),
				split(10, svc("backend", "version", "v2")),
				split(10, svc("backend", "version", "v1")))},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> [" + backendV1 + ":90 " + backendV2 + ":10] idle=1h0m0s stat=backend",
				"C " + backendV2 + " EDS connect=5s", // names sort by their hash
				"C " + backendV1 + " EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"E " + backendV2 + " backend {version=v2}",
				"E " + backendV1 + " backend {version=v1}",
			},
		},
		{
			name: "every split weight zero: no traffic is routed",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			routes: []*resource.Resource{splitRoute("split", "backend", split(0, svc("backend")))},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> (no filter)",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
			},
		},
		{
			name: "split collapsing to one cluster",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			routes: []*resource.Resource{splitRoute("split", "backend",
				split(50, svc("backend")), split(math32, svc("backend")), split(0, svc("other")))},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"E backend backend {}",
			},
		},
		{
			name: "destination subset, shared by two outbounds",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("127.0.0.1", 10001, "backend"),
				outbound("127.0.0.2", 10001, "backend"),
			}}),
			routes: []*resource.Resource{trafficRoute("dest", epoch, resource.TrafficRouteSpec{
				Sources: sel(svc("web")), Destinations: sel(svc("backend")),
				Conf: &resource.TrafficRouteConf{Destination: svc("backend", "version", "v2", "kuma.io/zone", "east")},
			})},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> " + backendV2Zone + " idle=1h0m0s stat=backend",
				"L outbound:127.0.0.2:10001 OUTBOUND@127.0.0.2:10001 -> " + backendV2Zone + " idle=1h0m0s stat=backend",
				"C " + backendV2Zone + " EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"E " + backendV2Zone + " backend {kuma.io/zone=east,version=v2}",
			},
		},
		{
			name: "wildcards resolve to the outbound's tags",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("127.0.0.1", 10001, "backend"),
				outbound("127.0.0.1", 10002, "backend", "version", "v1"),
				outbound("127.0.0.1", 10003, "other"),
			}}),
			routes: []*resource.Resource{trafficRoute("route-all", epoch, resource.TrafficRouteSpec{
				Sources: sel(svc("*")), Destinations: sel(svc("*")),
				Conf: &resource.TrafficRouteConf{Destination: svc("*", "version", "*")},
			})},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"L outbound:127.0.0.1:10002 OUTBOUND@127.0.0.1:10002 -> " + backendV1 + " idle=1h0m0s stat=backend",
				"L outbound:127.0.0.1:10003 OUTBOUND@127.0.0.1:10003 -> other idle=1h0m0s stat=other",
				"C backend EDS connect=5s",
				"C " + backendV1 + " EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"C other EDS connect=5s",
				"E backend backend {}",
				"E " + backendV1 + " backend {version=v1}",
				"E other other {}",
			},
		},
		{
			name: "load balancers",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 1, "lr"), outbound("", 2, "rh"), outbound("", 3, "rnd"), outbound("", 4, "mg"),
				outbound("", 5, "rr"), outbound("", 6, "bad"),
			}}),
			routes: []*resource.Resource{
				lbRoute("a-lr", "lr", resource.LoadBalancer{LeastRequest: &resource.LeastRequestLB{ChoiceCount: 3}}),
				lbRoute("b-rh", "rh", resource.LoadBalancer{RingHash: &resource.RingHashLB{HashFunction: "MURMUR_HASH_2", MinRingSize: 64, MaxRingSize: 1 << 30}}),
				lbRoute("c-rnd", "rnd", resource.LoadBalancer{Random: &struct{}{}}),
				lbRoute("d-mg", "mg", resource.LoadBalancer{Maglev: &struct{}{}}),
				lbRoute("e-rr", "rr", resource.LoadBalancer{RoundRobin: &struct{}{}}),
				lbRoute("f-bad", "bad", resource.LoadBalancer{Random: &struct{}{}, Maglev: &struct{}{}}),
			},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:1 OUTBOUND@127.0.0.1:1 -> lr idle=1h0m0s stat=lr",
				"L outbound:127.0.0.1:2 OUTBOUND@127.0.0.1:2 -> rh idle=1h0m0s stat=rh",
				"L outbound:127.0.0.1:3 OUTBOUND@127.0.0.1:3 -> rnd idle=1h0m0s stat=rnd",
				"L outbound:127.0.0.1:4 OUTBOUND@127.0.0.1:4 -> mg idle=1h0m0s stat=mg",
				"L outbound:127.0.0.1:5 OUTBOUND@127.0.0.1:5 -> rr idle=1h0m0s stat=rr",
				"L outbound:127.0.0.1:6 OUTBOUND@127.0.0.1:6 -> bad idle=1h0m0s stat=bad",
				"C bad EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"C lr EDS connect=5s lb=LEAST_REQUEST",
				"C mg EDS connect=5s lb=MAGLEV",
				"C rh EDS connect=5s lb=RING_HASH",
				"C rnd EDS connect=5s lb=RANDOM",
				"C rr EDS connect=5s",
				"E bad bad {}", "E lr lr {}", "E mg mg {}", "E rh rh {}", "E rnd rnd {}", "E rr rr {}",
			},
		},
		{
			name: "no mesh timeouts: Kuma's defaults",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			timeouts: []*resource.Resource{meshTimeout("http-only", resource.MeshTimeoutSpec{
				To: []resource.MeshTimeoutItem{{TargetRef: resource.TargetRef{Kind: resource.KindMesh},
					Default: resource.MeshTimeoutConf{HTTP: &resource.MeshTimeoutHTTP{RequestTimeout: resource.NewDuration(time.Second)}}}},
			})},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"E backend backend {}",
			},
		},
		{
			name: "timeouts to and from",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
				outbound("", 10002, "db"),
			}}),
			timeouts: []*resource.Resource{meshTimeout("all", resource.MeshTimeoutSpec{
				From: []resource.MeshTimeoutItem{toMesh(conf(2*time.Second, 10*time.Minute))},
				To: []resource.MeshTimeoutItem{
					toMesh(conf(3*time.Second, 20*time.Minute)),
					toService("db", conf(0, 2*time.Hour)),
				},
			})},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=10m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=20m0s stat=backend",
				"L outbound:127.0.0.1:10002 OUTBOUND@127.0.0.1:10002 -> db idle=2h0m0s stat=db",
				"C backend EDS connect=3s",
				"C db EDS connect=3s",
				"C localhost:8080 STATIC connect=2s to=127.0.0.1:8080",
				"E backend backend {}",
				"E db db {}",
			},
		},
		{
			name: "timeouts of a split follow each destination's service, idle the outbound's",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			routes: []*resource.Resource{splitRoute("split", "backend",
				split(50, svc("backend")), split(50, svc("backend-next")))},
			timeouts: []*resource.Resource{meshTimeout("per-service", resource.MeshTimeoutSpec{
				To: []resource.MeshTimeoutItem{
					toService("backend", conf(time.Second, time.Minute)),
					toService("backend-next", conf(7*time.Second, 7*time.Minute)),
				},
			})},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> [backend:50 backend-next:50] idle=1m0s stat=backend",
				"C backend EDS connect=1s",
				"C backend-next EDS connect=7s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"E backend backend {}",
				"E backend-next backend-next {}",
			},
		},
		{
			name: "from entries apply to the inbounds the top-level targetRef selects",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: []resource.Inbound{
				inbound(8080, svc("web")),
				inbound(9090, svc("admin")),
			}}),
			timeouts: []*resource.Resource{meshTimeout("admin-only", resource.MeshTimeoutSpec{
				TargetRef: &resource.TargetRef{Kind: resource.KindMeshService, Name: "admin"},
				From:      []resource.MeshTimeoutItem{toMesh(conf(time.Second, time.Second))},
			})},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=1h0m0s stat=localhost_8080",
				"L inbound:10.0.0.1:9090 INBOUND@10.0.0.1:9090 -> localhost:9090 idle=1s stat=localhost_9090",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"C localhost:9090 STATIC connect=1s to=127.0.0.1:9090",
			},
		},
		{
			name: "idle timeout 0 disables it; invalid values fall back to defaults",
			proxy: dataplane("web-1", netw{Address: "10.0.0.1", Inbound: web, Outbound: []resource.Outbound{
				outbound("", 10001, "backend"),
			}}),
			timeouts: []*resource.Resource{meshTimeout("odd", resource.MeshTimeoutSpec{
				From: []resource.MeshTimeoutItem{toMesh(resource.MeshTimeoutConf{
					ConnectionTimeout: durationOf("-1s"), IdleTimeout: durationOf("0s")})},
				To: []resource.MeshTimeoutItem{toMesh(resource.MeshTimeoutConf{
					ConnectionTimeout: durationOf("0s"), IdleTimeout: durationOf("soon")})},
			})},
			want: []string{
				"L inbound:10.0.0.1:8080 INBOUND@10.0.0.1:8080 -> localhost:8080 idle=0s stat=localhost_8080",
				"L outbound:127.0.0.1:10001 OUTBOUND@127.0.0.1:10001 -> backend idle=1h0m0s stat=backend",
				"C backend EDS connect=5s",
				"C localhost:8080 STATIC connect=5s to=127.0.0.1:8080",
				"E backend backend {}",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Mesh: mesh(), Proxy: tc.proxy, Routes: tc.routes, Timeouts: tc.timeouts}
			before := cloneAll(append(append([]*resource.Resource{tc.proxy}, tc.routes...), tc.timeouts...))
			p, err := Generate(in)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if after := append(append([]*resource.Resource{tc.proxy}, tc.routes...), tc.timeouts...); !reflect.DeepEqual(before, after) {
				t.Error("Generate changed its input")
			}
			checkProxy(t, p, []*resource.Resource{tc.proxy})
			if got := summary(t, p); !slices.Equal(got, tc.want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			// Same input, same bytes; and the policies' order in Input does not matter.
			again, err := Generate(Input{Mesh: mesh(), Proxy: tc.proxy, Routes: shuffled(tc.routes), Timeouts: shuffled(tc.timeouts)})
			if err != nil {
				t.Fatal(err)
			}
			if !proxyEqual(p, again) || !bytes.Equal(marshalProxy(t, p), marshalProxy(t, again)) {
				t.Error("a second Generate of the same input differs")
			}
		})
	}
}

const math32 = 1<<32 - 1

func cloneAll(rs []*resource.Resource) []*resource.Resource {
	out := make([]*resource.Resource, len(rs))
	for i, r := range rs {
		out[i] = resource.Clone(r)
	}
	return out
}

func durationOf(s string) *resource.Duration { d := resource.Duration(s); return &d }

func lbRoute(name, service string, lb resource.LoadBalancer) *resource.Resource {
	return trafficRoute(name, epoch, resource.TrafficRouteSpec{
		Sources: sel(svc("*")), Destinations: sel(svc(service)),
		Conf: &resource.TrafficRouteConf{Destination: svc(service), LoadBalancer: &lb},
	})
}

func shuffled(rs []*resource.Resource) []*resource.Resource {
	out := slices.Clone(rs)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func proxyEqual(a, b *Proxy) bool {
	if len(a.Listeners) != len(b.Listeners) || len(a.Clusters) != len(b.Clusters) ||
		!slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y EndpointRef) bool {
			return x.Cluster == y.Cluster && x.Service == y.Service && mapsEqual(x.Tags, y.Tags)
		}) || !slices.Equal(a.Warnings, b.Warnings) {
		return false
	}
	for i := range a.Listeners {
		if !proto.Equal(a.Listeners[i], b.Listeners[i]) {
			return false
		}
	}
	for i := range a.Clusters {
		if !proto.Equal(a.Clusters[i], b.Clusters[i]) {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
