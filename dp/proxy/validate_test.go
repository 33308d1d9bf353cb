package proxy

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
	"github.com/kuma-ha/kuma-ha/xds/envoy"
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

const meshDoc = "type: Mesh\nname: default"

// Dataplanes providing the services the fixtures call.
const providersDoc = `type: Dataplane
mesh: default
name: providers
networking:
  address: 10.0.1.1
  inbound:
  - {port: 9001, tags: {kuma.io/service: backend, version: v1}}
  - {port: 9002, tags: {kuma.io/service: backend, version: v2}}
  - {port: 9003, tags: {kuma.io/service: backend-canary}}
  - {port: 9004, tags: {kuma.io/service: db}}
  - {port: 9005, tags: {kuma.io/service: db}, health: {ready: false}}`

const webDoc = `type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - {port: 8080, servicePort: 80, tags: {kuma.io/service: web, version: v1}}
  - {port: 8081, servicePort: 80, serviceAddress: 10.0.0.9, tags: {kuma.io/service: web-admin}}
  - {port: 8082, address: 10.0.0.2, state: Ignored, tags: {kuma.io/service: hidden}}
  outbound:
  - {port: 10001, tags: {kuma.io/service: backend}}
  - {port: 10002, address: 127.0.0.2, tags: {kuma.io/service: db}}
  - {port: 10003, tags: {kuma.io/service: nobody}}`

const splitDoc = `type: TrafficRoute
mesh: default
name: split
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: backend}}]
conf:
  split:
  - {weight: 90, destination: {kuma.io/service: backend, version: v1}}
  - {weight: 10, destination: {kuma.io/service: backend-canary}}
  - {weight: 0, destination: {kuma.io/service: never}}`

const timeoutDoc = `type: MeshTimeout
mesh: default
name: timeouts
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 2s, idleTimeout: 0s}
  from:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 10m, connectionTimeout: 1s}`

// generated is the Config xds/envoy makes for the Dataplane dp under
// policies, with the load assignments of its EDS clusters.
func generated(t *testing.T, dp string, policies ...string) Config {
	t.Helper()
	in := envoy.Input{Mesh: decode(t, meshDoc), Proxy: decode(t, dp)}
	for _, doc := range policies {
		r := decode(t, doc)
		switch r.Type {
		case resource.TypeTrafficRoute:
			in.Routes = append(in.Routes, r)
		case resource.TypeMeshTimeout:
			in.Timeouts = append(in.Timeouts, r)
		}
	}
	out, err := envoy.Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	providers := []*resource.Resource{decode(t, providersDoc)}
	cfg := config()
	for _, l := range out.Listeners {
		cfg.Listeners[l.GetName()] = l
	}
	for _, c := range out.Clusters {
		cfg.Clusters[c.GetName()] = c
	}
	for _, ref := range out.Endpoints {
		cfg.Endpoints[ref.Cluster] = envoy.LoadAssignment(ref, providers)
	}
	return cfg
}

// TestGeneratedPlan: what the plan makes of a generated config (every shape
// xds/envoy makes is walked by TestEveryGeneratedShape).
func TestGeneratedPlan(t *testing.T) {
	pl, err := compile(generated(t, webDoc, splitDoc, timeoutDoc))
	if err != nil {
		t.Fatal(err)
	}
	in := pl.listeners["inbound:10.0.0.1:8080"]
	if in == nil || in.dir != DirectionInbound || in.addr != "10.0.0.1:8080" || in.tcp.cluster != "localhost:127.0.0.1:80" || in.tcp.idle != 10*time.Minute {
		t.Fatalf("inbound %+v", in)
	}
	out := pl.listeners["outbound:127.0.0.1:10001"]
	if out == nil || out.dir != DirectionOutbound || len(out.tcp.weighted) != 2 || out.tcp.idle != 0 {
		t.Fatalf("outbound %+v", out)
	}
	if c := pl.clusters["db"]; c == nil || c.connectTimeout != 2*time.Second || strings.Join(c.endpoints, ",") != "10.0.1.1:9004" {
		t.Fatalf("db cluster %+v (an unhealthy endpoint must be left out)", c)
	}
	if c := pl.clusters["nobody"]; c == nil || len(c.endpoints) != 0 {
		t.Fatalf("cluster without endpoints %+v", c)
	}
	// Two inbounds share servicePort 80 with different serviceAddresses:
	// each gets its own qualified local cluster.
	if c := pl.clusters["localhost:127.0.0.1:80"]; c == nil || c.connectTimeout != time.Second || strings.Join(c.endpoints, ",") != "127.0.0.1:80" {
		t.Fatalf("local cluster %+v", c)
	}
	if c := pl.clusters["localhost:10.0.0.9:80"]; c == nil || strings.Join(c.endpoints, ",") != "10.0.0.9:80" {
		t.Fatalf("qualified local cluster %+v", c)
	}
}

func TestValidateRejects(t *testing.T) {
	base := func() Config {
		return config(
			outbound("out", "backend"),
			tcpListener("in", 8080, core.TrafficDirection_INBOUND, durationpb.New(time.Minute), "localhost:80"),
			edsCluster("backend", time.Second),
			loadAssignment("backend", "10.0.0.1:80", "10.0.0.2:80"),
			&clusterv3.Cluster{
				Name:                 "localhost:80",
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				ConnectTimeout:       durationpb.New(time.Second),
				LoadAssignment:       loadAssignment("localhost:80", "127.0.0.1:80"),
			},
		)
	}
	tcpOf := func(l *listenerv3.Listener) *tcpv3.TcpProxy {
		tcp := &tcpv3.TcpProxy{}
		if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(tcp); err != nil {
			panic(err)
		}
		return tcp
	}
	setTCP := func(l *listenerv3.Listener, tcp *tcpv3.TcpProxy) {
		a, err := anypb.New(tcp)
		if err != nil {
			panic(err)
		}
		l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
	editTCP := func(f func(*tcpv3.TcpProxy)) func(Config) {
		return func(c Config) {
			l := c.Listeners["out"]
			tcp := tcpOf(l)
			f(tcp)
			setTCP(l, tcp)
		}
	}
	if err := Validate(base()); err != nil {
		t.Fatalf("base config rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(Config)
		want string // "" : accepted
	}{
		{"missing cluster is fine", func(c Config) { delete(c.Clusters, "backend") }, ""},
		{"eds cluster without load assignment is fine", func(c Config) { delete(c.Endpoints, "backend") }, ""},
		{"empty filter chain is fine (Envoy closes its connections)", func(c Config) {
			c.Listeners["out"].FilterChains[0].Filters = nil
		}, ""},
		{"port 0 is fine", func(c Config) { c.Listeners["in"].Address = sockAddr("127.0.0.1", 0) }, ""},
		{"endpoint weight 1 is fine", func(c Config) {
			c.Endpoints["backend"].Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(1)
		}, ""},
		{"http connection manager", func(c Config) {
			c.Listeners["out"].FilterChains[0].Filters[0] = &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{
					TypeUrl: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"}}}
		}, `listener "out": filter_chains[0].filters[0]: unsupported filter "envoy.filters.network.http_connection_manager"`},
		{"filter before tcp_proxy", func(c Config) {
			fc := c.Listeners["out"].FilterChains[0]
			fc.Filters = append([]*listenerv3.Filter{{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{
				TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"}}}}, fc.Filters...)
		}, `listener "out": filter_chains[0].filters[0]: unsupported filter "envoy.filters.network.rbac"`},
		{"tcp_proxy not last", func(c Config) {
			fc := c.Listeners["out"].FilterChains[0]
			fc.Filters = append(fc.Filters, fc.Filters[0])
		}, `listener "out": filter_chains[0].filters[0]: tcp_proxy is a terminal filter and must be the last one`},
		{"filter without config", func(c Config) { c.Listeners["out"].FilterChains[0].Filters[0].ConfigType = nil },
			`listener "out": filter_chains[0].filters[0].typed_config: required`},
		{"two filter chains", func(c Config) {
			l := c.Listeners["out"]
			l.FilterChains = append(l.FilterChains, l.FilterChains[0])
		}, `listener "out": filter_chains: 2 filter chains, the built-in proxy supports exactly one`},
		{"no filter chain", func(c Config) { c.Listeners["out"].FilterChains = nil }, `listener "out": filter_chains: 0 filter chains`},
		{"filter chain match", func(c Config) {
			c.Listeners["out"].FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"x"}}
		}, `listener "out": filter_chains[0].filter_chain_match: unsupported field`},
		{"tls", func(c Config) {
			c.Listeners["out"].FilterChains[0].TransportSocket = &core.TransportSocket{Name: "envoy.transport_sockets.tls"}
		}, `listener "out": filter_chains[0].transport_socket: unsupported field`},
		{"listener filters", func(c Config) {
			c.Listeners["out"].ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}}
		}, `listener "out": listener_filters: unsupported field`},
		{"original dst", func(c Config) { c.Listeners["out"].UseOriginalDst = wrapperspb.Bool(true) },
			`listener "out": use_original_dst: unsupported field`},
		{"bind_to_port false", func(c Config) { c.Listeners["out"].BindToPort = wrapperspb.Bool(false) },
			`listener "out": bind_to_port: false is not supported`},
		{"udp", func(c Config) {
			c.Listeners["out"].Address.GetSocketAddress().Protocol = core.SocketAddress_UDP
		}, `listener "out": address.socket_address.protocol: only TCP is supported, not UDP`},
		{"hostname", func(c Config) { c.Listeners["out"].Address.GetSocketAddress().Address = "localhost" },
			`listener "out": address.socket_address.address: "localhost" is not an IP address`},
		{"pipe", func(c Config) {
			c.Listeners["out"].Address = &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: "/tmp/x"}}}
		}, `listener "out": address: only socket_address is supported`},
		{"no address", func(c Config) { c.Listeners["out"].Address = nil }, `listener "out": address: required`},
		{"named port", func(c Config) {
			c.Listeners["out"].Address.GetSocketAddress().PortSpecifier = &core.SocketAddress_NamedPort{NamedPort: "http"}
		}, `listener "out": address.socket_address.named_port: unsupported field`},
		{"duplicate address", func(c Config) {
			l := outbound("out2", "backend")
			l.Address = sockAddr("127.0.0.1", 8080)
			c.Listeners["out2"] = l
		}, `listener "out2": address: 127.0.0.1:8080 is also the address of listener "in"`},
		{"name differs from key", func(c Config) { c.Listeners["out"].Name = "other" },
			`listener "out": name: "other" does not match the key it is stored under`},
		{"nil listener", func(c Config) { c.Listeners["nil"] = nil }, `listener "nil": nil`},
		{"unknown fields", func(c Config) {
			c.Listeners["out"].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 1))
		}, `listener "out": unknown fields`},
		{"tcp_proxy access log", editTCP(func(tcp *tcpv3.TcpProxy) { tcp.MaxConnectAttempts = wrapperspb.UInt32(3) }),
			`listener "out": filter_chains[0].filters[0].typed_config.max_connect_attempts: unsupported field`},
		{"tcp_proxy without cluster", editTCP(func(tcp *tcpv3.TcpProxy) { tcp.ClusterSpecifier = nil }),
			`listener "out": filter_chains[0].filters[0].typed_config: no cluster or weighted_clusters`},
		{"weight 0", editTCP(func(tcp *tcpv3.TcpProxy) {
			tcp.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{
				Clusters: []*tcpv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: "a", Weight: 1}, {Name: "b"}}}}
		}), `listener "out": filter_chains[0].filters[0].typed_config.weighted_clusters.clusters[1].weight: must be at least 1`},
		{"no weighted cluster", editTCP(func(tcp *tcpv3.TcpProxy) {
			tcp.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{}}
		}), `weighted_clusters.clusters: no cluster`},
		{"negative idle", editTCP(func(tcp *tcpv3.TcpProxy) { tcp.IdleTimeout = durationpb.New(-time.Second) }),
			`typed_config.idle_timeout: invalid duration`},
		{"strict dns", func(c Config) {
			c.Clusters["backend"].ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		}, `cluster "backend": type: unsupported cluster type STRICT_DNS`},
		{"cluster-provided lb", func(c Config) { c.Clusters["backend"].LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED },
			`cluster "backend": lb_policy: unsupported load balancing policy CLUSTER_PROVIDED`},
		{"ring above max", func(c Config) {
			c.Clusters["backend"].LbPolicy = clusterv3.Cluster_RING_HASH
			c.Clusters["backend"].LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				MinimumRingSize: wrapperspb.UInt64(2048), MaximumRingSize: wrapperspb.UInt64(1024)}}
		}, `cluster "backend": ring_hash_lb_config.minimum_ring_size: 2048 is above maximum_ring_size 1024`},
		{"choice count 1", func(c Config) {
			c.Clusters["backend"].LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			c.Clusters["backend"].LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
				ChoiceCount: wrapperspb.UInt32(1)}}
		}, `cluster "backend": least_request_lb_config.choice_count: must be at least 2, not 1`},
		{"eds without config", func(c Config) { c.Clusters["backend"].EdsClusterConfig = nil },
			`cluster "backend": eds_cluster_config: required for an EDS cluster`},
		{"eds over a separate server", func(c Config) {
			c.Clusters["backend"].EdsClusterConfig.EdsConfig.ConfigSourceSpecifier = &core.ConfigSource_ApiConfigSource{
				ApiConfigSource: &core.ApiConfigSource{ApiType: core.ApiConfigSource_GRPC}}
		}, `cluster "backend": eds_cluster_config.eds_config: only ads is supported`},
		{"eds with load assignment", func(c Config) { c.Clusters["backend"].LoadAssignment = loadAssignment("backend") },
			`cluster "backend": load_assignment: unsupported field`},
		{"zero connect timeout", func(c Config) { c.Clusters["backend"].ConnectTimeout = durationpb.New(0) },
			`cluster "backend": connect_timeout: must be a positive duration, not 0s`},
		{"circuit breakers", func(c Config) { c.Clusters["backend"].CircuitBreakers = &clusterv3.CircuitBreakers{} },
			`cluster "backend": circuit_breakers: unsupported field`},
		{"upstream tls", func(c Config) { c.Clusters["backend"].TransportSocket = &core.TransportSocket{Name: "tls"} },
			`cluster "backend": transport_socket: unsupported field`},
		{"cluster name differs from key", func(c Config) { c.Clusters["backend"].Name = "x" },
			`cluster "backend": name: "x" does not match the key it is stored under`},
		{"static endpoint hostname", func(c Config) {
			c.Clusters["localhost:80"].LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address = "localhost"
		}, `cluster "localhost:80": load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "localhost" is not an IP address`},
		{"endpoint port 0", func(c Config) {
			c.Endpoints["backend"].Endpoints[0].LbEndpoints[1].GetEndpoint().Address.GetSocketAddress().PortSpecifier =
				&core.SocketAddress_PortValue{}
		}, `cluster load assignment "backend": endpoints[0].lb_endpoints[1].endpoint.address.socket_address.port_value: 0 is not a port`},
		{"endpoint weight", func(c Config) {
			c.Endpoints["backend"].Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(5)
		}, `cluster load assignment "backend": endpoints[0].lb_endpoints[0].load_balancing_weight: endpoint weights are not supported`},
		{"priority", func(c Config) { c.Endpoints["backend"].Endpoints[0].Priority = 1 },
			`cluster load assignment "backend": endpoints[0].priority: unsupported field`},
		{"overload policy", func(c Config) { c.Endpoints["backend"].Policy = &endpointv3.ClusterLoadAssignment_Policy{} },
			`cluster load assignment "backend": policy: unsupported field`},
		{"load assignment for another cluster", func(c Config) { c.Endpoints["backend"].ClusterName = "db" },
			`cluster load assignment "backend": cluster_name: "db" does not match the cluster "backend"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.edit(cfg)
			err := Validate(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
			// Apply refuses what Validate refuses, and changes nothing.
			if tc.want != "" {
				p := newProxy(t, Options{})
				if err := p.Apply(cfg); err == nil {
					t.Fatal("Apply accepted an invalid config")
				}
				if st := p.Status(); len(st.Listeners) != 0 {
					t.Fatalf("invalid config installed: %+v", st)
				}
			}
		})
	}
}
