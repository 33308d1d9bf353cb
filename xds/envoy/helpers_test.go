package envoy

import (
	"bytes"
	"fmt"
	"maps"
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

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func tags(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func svc(name string, kv ...string) map[string]string {
	return tags(append([]string{resource.ServiceTag, name}, kv...)...)
}

func dataplane(name string, n resource.DataplaneNetworking) *resource.Resource {
	spec := &resource.DataplaneSpec{Networking: n}
	spec.Default()
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeDataplane, Mesh: "default", Name: name, CreationTime: epoch, ModificationTime: epoch},
		Spec: spec,
	}
}

func mesh() *resource.Resource {
	return &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: "default"}, Spec: &resource.MeshSpec{}}
}

func weight(w uint32) *uint32 { return &w }

func trafficRoute(name string, created time.Time, spec resource.TrafficRouteSpec) *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeTrafficRoute, Mesh: "default", Name: name, CreationTime: created, ModificationTime: created},
		Spec: &spec,
	}
}

func sel(m map[string]string) []resource.Selector { return []resource.Selector{{Match: m}} }

// splitRoute sends traffic from anyone to service through the given split.
func splitRoute(name, service string, split ...resource.TrafficRouteSplit) *resource.Resource {
	return trafficRoute(name, epoch, resource.TrafficRouteSpec{
		Sources:      sel(svc("*")),
		Destinations: sel(svc(service)),
		Conf:         &resource.TrafficRouteConf{Split: split},
	})
}

func split(w uint32, dest map[string]string) resource.TrafficRouteSplit {
	return resource.TrafficRouteSplit{Weight: weight(w), Destination: dest}
}

func meshTimeout(name string, spec resource.MeshTimeoutSpec) *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshTimeout, Mesh: "default", Name: name, CreationTime: epoch},
		Spec: &spec,
	}
}

func conf(connect, idle time.Duration) resource.MeshTimeoutConf {
	var c resource.MeshTimeoutConf
	if connect != 0 {
		c.ConnectionTimeout = resource.NewDuration(connect)
	}
	if idle != 0 {
		c.IdleTimeout = resource.NewDuration(idle)
	}
	return c
}

func toMesh(c resource.MeshTimeoutConf) resource.MeshTimeoutItem {
	return resource.MeshTimeoutItem{TargetRef: resource.TargetRef{Kind: resource.KindMesh}, Default: c}
}

func toService(name string, c resource.MeshTimeoutConf) resource.MeshTimeoutItem {
	return resource.MeshTimeoutItem{TargetRef: resource.TargetRef{Kind: resource.KindMeshService, Name: name}, Default: c}
}

// tcpOf unpacks the tcp_proxy of a listener's only filter chain; nil if the
// chain has no filter.
func tcpOf(t testing.TB, l *listenerv3.Listener) *tcpv3.TcpProxy {
	t.Helper()
	if len(l.FilterChains) != 1 {
		t.Fatalf("listener %s: %d filter chains, want 1", l.Name, len(l.FilterChains))
	}
	fs := l.FilterChains[0].Filters
	if len(fs) == 0 {
		return nil
	}
	if len(fs) != 1 || fs[0].Name != "envoy.filters.network.tcp_proxy" {
		t.Fatalf("listener %s: filters %v, want one tcp_proxy", l.Name, fs)
	}
	tcp := &tcpv3.TcpProxy{}
	if err := fs[0].GetTypedConfig().UnmarshalTo(tcp); err != nil {
		t.Fatalf("listener %s: unpack tcp_proxy: %v", l.Name, err)
	}
	return tcp
}

// checkProxy asserts what must hold for every generated config: every
// resource (and every tcp_proxy inside a listener, which the listener's
// ValidateAll does not look into) passes ValidateAll, lists are sorted and
// unique, every cluster a tcp_proxy names exists, every EDS cluster has an
// EndpointRef and every EndpointRef a cluster, and the CLA of every ref built
// from dataplanes is valid too.
func checkProxy(t testing.TB, p *Proxy, dataplanes []*resource.Resource) {
	t.Helper()
	clusters := map[string]*clusterv3.Cluster{}
	for i, c := range p.Clusters {
		if err := c.ValidateAll(); err != nil {
			t.Errorf("cluster %s: ValidateAll: %v", c.Name, err)
		}
		if i > 0 && p.Clusters[i-1].Name >= c.Name {
			t.Errorf("clusters not sorted/unique at %d: %q then %q", i, p.Clusters[i-1].Name, c.Name)
		}
		clusters[c.Name] = c
	}
	for i, l := range p.Listeners {
		if err := l.ValidateAll(); err != nil {
			t.Errorf("listener %s: ValidateAll: %v", l.Name, err)
		}
		if i > 0 && p.Listeners[i-1].Name >= l.Name {
			t.Errorf("listeners not sorted/unique at %d: %q then %q", i, p.Listeners[i-1].Name, l.Name)
		}
		tcp := tcpOf(t, l)
		if tcp == nil {
			continue
		}
		if err := tcp.ValidateAll(); err != nil {
			t.Errorf("listener %s: tcp_proxy ValidateAll: %v", l.Name, err)
		}
		// The hand-made encoding is what protobuf itself makes of the message.
		if b, err := (proto.MarshalOptions{Deterministic: true}).Marshal(tcp); err != nil || !bytes.Equal(b, l.FilterChains[0].Filters[0].GetTypedConfig().Value) {
			t.Errorf("listener %s: tcp_proxy bytes differ from proto.Marshal of %v (%v)", l.Name, tcp, err)
		}
		names := []string{tcp.GetCluster()}
		if wc := tcp.GetWeightedClusters(); wc != nil {
			names = names[:0]
			for _, c := range wc.Clusters {
				names = append(names, c.Name)
			}
		}
		for _, n := range names {
			if clusters[n] == nil {
				t.Errorf("listener %s: tcp_proxy names cluster %q, which is not generated", l.Name, n)
			}
		}
	}
	refs := map[string]bool{}
	for i, r := range p.Endpoints {
		if i > 0 && p.Endpoints[i-1].Cluster >= r.Cluster {
			t.Errorf("endpoints not sorted/unique at %d: %q then %q", i, p.Endpoints[i-1].Cluster, r.Cluster)
		}
		refs[r.Cluster] = true
		c := clusters[r.Cluster]
		if c == nil || c.GetType() != clusterv3.Cluster_EDS {
			t.Errorf("EndpointRef %q has no EDS cluster", r.Cluster)
		}
		if _, ok := r.Tags[resource.ServiceTag]; ok {
			t.Errorf("EndpointRef %q: Tags carry %s", r.Cluster, resource.ServiceTag)
		}
		cla := LoadAssignment(r, dataplanes)
		if err := cla.ValidateAll(); err != nil {
			t.Errorf("CLA %s: ValidateAll: %v", r.Cluster, err)
		}
		if cla.ClusterName != r.Cluster {
			t.Errorf("CLA %s: cluster_name %q", r.Cluster, cla.ClusterName)
		}
	}
	for name, c := range clusters {
		if c.GetType() == clusterv3.Cluster_EDS && !refs[name] {
			t.Errorf("EDS cluster %q has no EndpointRef", name)
		}
	}
}

// marshalProxy is the deterministic encoding of every resource, in order.
func marshalProxy(t testing.TB, p *Proxy) []byte {
	t.Helper()
	var buf bytes.Buffer
	opts := proto.MarshalOptions{Deterministic: true}
	for _, l := range p.Listeners {
		b, err := opts.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	for _, c := range p.Clusters {
		b, err := opts.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	fmt.Fprintf(&buf, "%v", p.Endpoints)
	return buf.Bytes()
}

// summary renders a Proxy as one line per resource, for readable assertions.
func summary(t testing.TB, p *Proxy) []string {
	t.Helper()
	var out []string
	for _, l := range p.Listeners {
		sa := l.GetAddress().GetSocketAddress()
		line := fmt.Sprintf("L %s %s@%s:%d", l.Name, l.TrafficDirection, sa.GetAddress(), sa.GetPortValue())
		tcp := tcpOf(t, l)
		switch {
		case tcp == nil:
			line += " -> (no filter)"
		case tcp.GetWeightedClusters() != nil:
			var ws []string
			for _, c := range tcp.GetWeightedClusters().Clusters {
				ws = append(ws, fmt.Sprintf("%s:%d", c.Name, c.Weight))
			}
			line += fmt.Sprintf(" -> [%s] idle=%s stat=%s", strings.Join(ws, " "), tcp.IdleTimeout.AsDuration(), tcp.StatPrefix)
		default:
			line += fmt.Sprintf(" -> %s idle=%s stat=%s", tcp.GetCluster(), tcp.IdleTimeout.AsDuration(), tcp.StatPrefix)
		}
		out = append(out, line)
	}
	for _, c := range p.Clusters {
		line := fmt.Sprintf("C %s %s connect=%s", c.Name, c.GetType(), c.ConnectTimeout.AsDuration())
		if c.GetType() == clusterv3.Cluster_STATIC {
			sa := c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress()
			line += fmt.Sprintf(" to=%s:%d", sa.Address, sa.GetPortValue())
		}
		if c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN {
			line += " lb=" + c.LbPolicy.String()
		}
		out = append(out, line)
	}
	for _, r := range p.Endpoints {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(r.Tags)) {
			kv = append(kv, k+"="+r.Tags[k])
		}
		out = append(out, fmt.Sprintf("E %s %s {%s}", r.Cluster, r.Service, strings.Join(kv, ",")))
	}
	for _, w := range p.Warnings {
		out = append(out, "W "+w)
	}
	return out
}
