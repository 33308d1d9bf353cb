package envoy

import (
	"fmt"
	"slices"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func hosts(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.Endpoints {
		for _, e := range l.LbEndpoints {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	return out
}

func TestLoadAssignment(t *testing.T) {
	dps := []*resource.Resource{
		dataplane("backend-1", netw{Address: "10.0.0.1", Inbound: []resource.Inbound{
			inbound(8080, svc("backend", "version", "v1")),
			inbound(8081, svc("backend", "version", "v2")),
			inbound(9090, svc("admin")),
		}}),
		dataplane("backend-2", netw{Address: "10.0.0.2", AdvertisedAddress: "192.168.0.2", Inbound: []resource.Inbound{
			{Port: 8080, Address: "10.0.0.20", Tags: svc("backend", "version", "v1")},
		}}),
		dataplane("backend-3", netw{Address: "10.0.0.3", Inbound: []resource.Inbound{
			{Port: 8080, Address: "10.0.0.30", Tags: svc("backend", "version", "v2")},
			{Port: 8081, Tags: svc("backend"), State: resource.InboundNotReady},
			{Port: 8082, Tags: svc("backend"), State: resource.InboundIgnored},
			{Port: 8083, Tags: svc("backend"), Health: &resource.Health{Ready: false}},
			{Port: 8084, Tags: svc("backend"), Health: &resource.Health{Ready: true}, State: resource.InboundReady},
		}}),
		dataplane("backend-4", netw{Address: "backend-4.local", Inbound: []resource.Inbound{
			inbound(8080, svc("backend")),
		}}),
		dataplane("backend-5", netw{Address: "fd00::5", Inbound: []resource.Inbound{
			inbound(8080, svc("backend")),
			inbound(8080, svc("backend")), // listed once
		}}),
		{Meta: resource.Meta{Type: resource.TypeMesh, Name: "not-a-dataplane"}, Spec: &resource.MeshSpec{}},
		nil,
	}
	cases := []struct {
		name string
		ref  EndpointRef
		want []string
	}{
		{"service", EndpointRef{Cluster: "backend", Service: "backend"},
			[]string{"10.0.0.1:8080", "10.0.0.1:8081", "10.0.0.3:8084", "10.0.0.30:8080", "192.168.0.2:8080", "fd00::5:8080"}},
		{"subset", EndpointRef{Cluster: backendV2, Service: "backend", Tags: tags("version", "v2")},
			[]string{"10.0.0.1:8081", "10.0.0.30:8080"}},
		{"wildcard tag", EndpointRef{Cluster: "x", Service: "backend", Tags: tags("version", "*")},
			[]string{"10.0.0.1:8080", "10.0.0.1:8081", "10.0.0.30:8080", "192.168.0.2:8080"}},
		{"no endpoints", EndpointRef{Cluster: "db", Service: "db"}, nil},
		{"another service's tags do not count", EndpointRef{Cluster: "admin", Service: "admin", Tags: tags("version", "v1")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cla := LoadAssignment(tc.ref, dps)
			if err := cla.ValidateAll(); err != nil {
				t.Fatalf("ValidateAll: %v", err)
			}
			if cla.ClusterName != tc.ref.Cluster {
				t.Errorf("cluster_name %q, want %q", cla.ClusterName, tc.ref.Cluster)
			}
			if got := hosts(cla); !slices.Equal(got, tc.want) {
				t.Errorf("endpoints %v, want %v", got, tc.want)
			}
			// The order of the Dataplanes does not matter.
			rev := slices.Clone(dps)
			slices.Reverse(rev)
			if !proto.Equal(cla, LoadAssignment(tc.ref, rev)) {
				t.Error("a different order of Dataplanes gives a different assignment")
			}
		})
	}
}

func TestSubsetClusterName(t *testing.T) {
	a := SubsetClusterName("backend", tags("version", "v1"))
	if b := SubsetClusterName("backend", svc("backend", "version", "v1")); a != b {
		t.Errorf("the service tag changes the name: %q vs %q", a, b)
	}
	if len(a) != len("backend-")+16 || a[:8] != "backend-" {
		t.Errorf("name %q is not {service}-{16 hex}", a)
	}
	if got := SubsetClusterName("backend", nil); got != "backend" {
		t.Errorf("no tags: %q, want the service", got)
	}
	// Tag sets that concatenate to the same bytes must still differ.
	x := SubsetClusterName("s", tags("ab", "c"))
	y := SubsetClusterName("s", tags("a", "bc"))
	if x == y {
		t.Errorf("ambiguous hash: %q", x)
	}
	if SubsetClusterName("s", tags("v", "1")) == SubsetClusterName("t", tags("v", "1")) {
		t.Error("the service does not change the hash")
	}
}

func TestSanitizeMetric(t *testing.T) {
	for in, want := range map[string]string{
		"backend":              "backend",
		"localhost:8080":       "localhost_8080",
		"redis.svc_6379":       "redis_svc_6379",
		"web/v1 é":             "web_v1__",
		"[fd00::1]:80":         "_fd00__1__80",
		"Ok-Name_09":           "Ok-Name_09",
		"\xff":                 "_",
		"a\u4e16b":             "a_b",
		"outbound:[::1]:10001": "outbound____1__10001",
	} {
		if got := sanitizeMetric(in); got != want {
			t.Errorf("sanitizeMetric(%q) = %q, want %q", in, got, want)
		}
	}
}
