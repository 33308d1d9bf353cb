package envoy

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

func TestBootstrap(t *testing.T) {
	opts := BootstrapOptions{NodeID: "default.web-1", Cluster: "web", RelayAddr: "127.0.0.1:40123"}
	out, err := Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bootstrap:\n%s", out)

	// YAML → JSON → proto, as Envoy reads it, gives what was built.
	js, err := yaml.YAMLToJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	got := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, got); err != nil {
		t.Fatalf("unmarshal: %v\n%s", err, js)
	}
	want, err := bootstrapProto(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("YAML round trip differs:\n%v\n%v", got, want)
	}
	if err := got.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	// And JSON round-trips too (Envoy takes bootstrap.json as well).
	js2, err := protojson.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js2, again); err != nil || !proto.Equal(again, want) {
		t.Fatalf("JSON round trip: %v", err)
	}

	if got.GetNode().GetId() != "default.web-1" || got.GetNode().GetCluster() != "web" {
		t.Errorf("node %v", got.GetNode())
	}
	if a := addrString(got.GetAdmin().GetAddress()); a != DefaultAdminAddr {
		t.Errorf("admin %s", a)
	}
	dr := got.GetDynamicResources()
	ads := dr.GetAdsConfig()
	if ads.GetApiType() != core.ApiConfigSource_GRPC || ads.GetTransportApiVersion() != core.ApiVersion_V3 ||
		len(ads.GetGrpcServices()) != 1 || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != RelayCluster {
		t.Errorf("ads_config %v", ads)
	}
	for name, cs := range map[string]*core.ConfigSource{"lds": dr.GetLdsConfig(), "cds": dr.GetCdsConfig()} {
		if cs.GetAds() == nil || cs.GetResourceApiVersion() != core.ApiVersion_V3 {
			t.Errorf("%s_config %v", name, cs)
		}
	}
	cs := got.GetStaticResources().GetClusters()
	if len(cs) != 1 {
		t.Fatalf("static clusters %v", cs)
	}
	c := cs[0]
	if c.GetName() != RelayCluster || c.GetType() != clusterv3.Cluster_STATIC || c.GetConnectTimeout().AsDuration().Seconds() != 1 {
		t.Errorf("relay cluster %v", c)
	}
	if a := addrString(c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()); a != "127.0.0.1:40123" {
		t.Errorf("relay address %s", a)
	}
	h := &httpv3.HttpProtocolOptions{}
	if err := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey].UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	if err := h.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if h.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("relay cluster is not HTTP/2: %v", h)
	}
	for _, s := range []string{"default.web-1", "127.0.0.1", "40123", RelayCluster, "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("bootstrap lacks %q", s)
		}
	}
}

func TestBootstrapAddresses(t *testing.T) {
	b, err := bootstrapProto(BootstrapOptions{NodeID: "m.p", AdminAddr: "[::1]:0", RelayAddr: "[::1]:5678"})
	if err != nil {
		t.Fatal(err)
	}
	if a := addrString(b.GetAdmin().GetAddress()); a != "[::1]:0" {
		t.Errorf("admin %s", a)
	}
	if b.GetNode().GetCluster() != "" {
		t.Errorf("cluster %q", b.GetNode().GetCluster())
	}
}

func TestBootstrapRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts BootstrapOptions
		want string
	}{
		{"no node", BootstrapOptions{RelayAddr: "127.0.0.1:1"}, "NodeID: required"},
		{"node without mesh", BootstrapOptions{NodeID: "web", RelayAddr: "127.0.0.1:1"}, "NodeID"},
		{"no relay", BootstrapOptions{NodeID: "m.p"}, "RelayAddr"},
		{"relay port 0", BootstrapOptions{NodeID: "m.p", RelayAddr: "127.0.0.1:0"}, "port 0"},
		{"relay host name", BootstrapOptions{NodeID: "m.p", RelayAddr: "localhost:1"}, "ip:port"},
		{"admin host name", BootstrapOptions{NodeID: "m.p", RelayAddr: "127.0.0.1:1", AdminAddr: "localhost:9901"}, "AdminAddr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Bootstrap(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Bootstrap: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
