package generator

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Input is everything one proxy's config depends on, read from one
// consistent view of the state.
type Input struct {
	Mesh     *resource.Resource   // the proxy's Mesh; nil is read as a Mesh with no fields set
	Proxy    *resource.Resource   // its Dataplane
	Routes   []*resource.Resource // TrafficRoutes of the mesh, sorted by name
	Timeouts []*resource.Resource // MeshTimeouts of the mesh, sorted by name
}

// EndpointRef names one EDS cluster a proxy needs and what selects its endpoints.
type EndpointRef struct {
	Cluster string            // EDS cluster / ClusterLoadAssignment name (mesh-scoped)
	Service string            // kuma.io/service value
	Tags    map[string]string // extra tags an endpoint's inbound must carry (nil for the plain service cluster)
}

// Proxy is one proxy's generated config.
type Proxy struct {
	Listeners []*listenerv3.Listener // sorted by name
	Clusters  []*clusterv3.Cluster   // sorted by name
	Endpoints []EndpointRef          // the EDS clusters this proxy needs, sorted by Cluster, unique
	// Warnings name what was left out because it cannot become valid Envoy
	// config ("networking.outbound[2]: address \"x\" is not an IP address"),
	// in the order met. The rest is generated regardless.
	Warnings []string
}

// Generate builds the listeners and clusters of in.Proxy. It fails only on
// input that is not what Input promises (a nil proxy, a resource of the wrong
// type or mesh); odd values inside the resources become Warnings.
func Generate(in Input) (*Proxy, error) {
	dp, err := checkInput(in)
	if err != nil {
		return nil, err
	}
	g := &gen{
		proxy:    in.Proxy,
		dp:       dp,
		routes:   routeCandidates(in.Routes, dp),
		timeouts: newTimeoutRules(in.Timeouts, in.Proxy, dp),
		clusters: make(map[string]*clusterv3.Cluster),
		local:    make(map[string]bool),
	}
	if err := g.inbounds(); err != nil {
		return nil, fmt.Errorf("generate %s: %w", in.Proxy.Key(), err)
	}
	if err := g.outbounds(); err != nil {
		return nil, fmt.Errorf("generate %s: %w", in.Proxy.Key(), err)
	}
	return g.result(), nil
}

func checkInput(in Input) (*resource.DataplaneSpec, error) {
	if in.Proxy == nil {
		return nil, errors.New("generate: Input.Proxy is nil")
	}
	key := in.Proxy.Key()
	dp, ok := in.Proxy.Spec.(*resource.DataplaneSpec)
	if !ok || dp == nil {
		return nil, fmt.Errorf("generate %s: Input.Proxy.Spec is %T, want *resource.DataplaneSpec", key, in.Proxy.Spec)
	}
	if in.Proxy.Type != "" && in.Proxy.Type != resource.TypeDataplane {
		return nil, fmt.Errorf("generate %s: Input.Proxy.Type is %q, want %q", key, in.Proxy.Type, resource.TypeDataplane)
	}
	if m := in.Mesh; m != nil {
		if s, ok := m.Spec.(*resource.MeshSpec); !ok || s == nil {
			return nil, fmt.Errorf("generate %s: Input.Mesh.Spec is %T, want *resource.MeshSpec", key, m.Spec)
		}
		if m.Name != "" && in.Proxy.Mesh != "" && m.Name != in.Proxy.Mesh {
			return nil, fmt.Errorf("generate %s: Input.Mesh is mesh %q, not the proxy's mesh %q", key, m.Name, in.Proxy.Mesh)
		}
	}
	for i, r := range in.Routes {
		if err := checkPolicy(in.Proxy, "Input.Routes", i, r, func(s resource.Spec) bool {
			t, ok := s.(*resource.TrafficRouteSpec)
			return ok && t != nil
		}, "*resource.TrafficRouteSpec"); err != nil {
			return nil, err
		}
	}
	for i, r := range in.Timeouts {
		if err := checkPolicy(in.Proxy, "Input.Timeouts", i, r, func(s resource.Spec) bool {
			t, ok := s.(*resource.MeshTimeoutSpec)
			return ok && t != nil
		}, "*resource.MeshTimeoutSpec"); err != nil {
			return nil, err
		}
	}
	return dp, nil
}

func checkPolicy(proxy *resource.Resource, field string, i int, r *resource.Resource, ok func(resource.Spec) bool, want string) error {
	key := proxy.Key()
	if r == nil {
		return fmt.Errorf("generate %s: %s[%d] is nil", key, field, i)
	}
	if !ok(r.Spec) {
		return fmt.Errorf("generate %s: %s[%d] (%s): spec is %T, want %s", key, field, i, r.Key(), r.Spec, want)
	}
	if r.Mesh != "" && proxy.Mesh != "" && r.Mesh != proxy.Mesh {
		return fmt.Errorf("generate %s: %s[%d] (%s) is in mesh %q, not the proxy's mesh %q", key, field, i, r.Key(), r.Mesh, proxy.Mesh)
	}
	return nil
}

// gen holds one Generate call's work in progress.
type gen struct {
	proxy    *resource.Resource
	dp       *resource.DataplaneSpec
	routes   []routeCandidate
	timeouts *timeoutRules

	listeners []*listenerv3.Listener
	clusters  map[string]*clusterv3.Cluster
	local     map[string]bool // names of the local (STATIC) clusters
	refs      []EndpointRef
	warnings  []string

	routeCache map[string]*resource.TrafficRouteSpec
}

func (g *gen) warnf(format string, args ...any) {
	g.warnings = append(g.warnings, fmt.Sprintf(format, args...))
}

func (g *gen) hasListener(name string) bool {
	return slices.ContainsFunc(g.listeners, func(l *listenerv3.Listener) bool { return l.Name == name })
}

// inboundPlan is an inbound that will get a listener.
type inboundPlan struct {
	index    int
	addr     string // the listener's address
	workload string // the application's address
	svcPort  uint32
}

func (g *gen) inbounds() error {
	ins := g.dp.Networking.Inbound
	plans := make([]inboundPlan, 0, len(ins))
	for i := range ins {
		in := &ins[i]
		if in.State == resource.InboundIgnored {
			continue // Kuma creates nothing for an ignored inbound
		}
		path := "networking.inbound[" + strconv.Itoa(i) + "]"
		p := inboundPlan{index: i, addr: cmp.Or(in.Address, g.dp.Networking.Address), svcPort: in.EffectiveServicePort()}
		p.workload = cmp.Or(in.ServiceAddress, defaultWorkloadAddress)
		switch {
		case !isIP(p.addr):
			g.warnf("%s: address %q is not an IP address; no listener", path, p.addr)
		case !validPort(in.Port):
			g.warnf("%s: port %d is out of range; no listener", path, in.Port)
		case !validPort(p.svcPort):
			g.warnf("%s: servicePort %d is out of range; no listener", path, p.svcPort)
		case !isIP(p.workload):
			g.warnf("%s: serviceAddress %q is not an IP address; no listener", path, p.workload)
		default:
			plans = append(plans, p)
		}
	}
	for _, p := range plans {
		in := &ins[p.index]
		name := InboundListenerName(p.addr, in.Port)
		if g.hasListener(name) {
			g.warnf("networking.inbound[%d]: listener %s is already defined by an earlier inbound; skipped", p.index, name)
			continue
		}
		local := LocalClusterName(p.svcPort)
		if sharedPortDiffers(plans, p) {
			local = qualifiedLocalClusterName(p.workload, p.svcPort)
		}
		t := g.timeouts.from(p.index)
		if c, ok := g.clusters[local]; ok {
			c.ConnectTimeout = durationpb.New(t.connect) // the last inbound decides, as in Kuma
		} else {
			g.clusters[local] = staticCluster(local, p.workload, p.svcPort, t.connect)
			g.local[local] = true
		}
		tcp := tcpProxy(local, t.idle)
		tcp.ClusterSpecifier = &tcpv3.TcpProxy_Cluster{Cluster: local}
		l, err := listener(name, p.addr, in.Port, core.TrafficDirection_INBOUND, tcp)
		if err != nil {
			return err
		}
		g.listeners = append(g.listeners, l)
	}
	return nil
}

// sharedPortDiffers reports whether another planned inbound has the same
// servicePort but reaches a different address.
func sharedPortDiffers(plans []inboundPlan, p inboundPlan) bool {
	for _, o := range plans {
		if o.svcPort == p.svcPort && o.workload != p.workload {
			return true
		}
	}
	return false
}

func (g *gen) outbounds() error {
	for i := range g.dp.Networking.Outbound {
		o := &g.dp.Networking.Outbound[i]
		path := "networking.outbound[" + strconv.Itoa(i) + "]"
		svc := o.ServiceName()
		addr := cmp.Or(o.Address, resource.DefaultOutboundAddress)
		switch {
		case svc == "" && o.BackendRef != nil:
			g.warnf("%s: backendRef outbounds are not generated", path)
			continue
		case svc == "":
			g.warnf("%s: no %s tag; no listener", path, resource.ServiceTag)
			continue
		case !utf8.ValidString(svc) || !validTags(o.Tags):
			g.warnf("%s: tags are not valid UTF-8; no listener", path)
			continue
		case !isIP(addr):
			g.warnf("%s: address %q is not an IP address; no listener", path, addr)
			continue
		case !validPort(o.Port):
			g.warnf("%s: port %d is out of range; no listener", path, o.Port)
			continue
		}
		name := OutboundListenerName(addr, o.Port)
		if g.hasListener(name) {
			g.warnf("%s: listener %s is already defined by an earlier outbound; skipped", path, name)
			continue
		}
		outTags := o.Tags
		if outTags[resource.ServiceTag] != svc { // the legacy service field
			outTags = map[string]string{resource.ServiceTag: svc}
		}
		route := g.route(svc)
		var dests []destination
		var lb *resource.LoadBalancer
		if route == nil {
			dests = []destination{{ref: EndpointRef{Cluster: svc, Service: svc}, weight: 1}}
		} else {
			dests = splitDestinations(route, outTags)
			lb = route.Conf.LoadBalancer
		}
		if j := slices.IndexFunc(dests, func(d destination) bool { return g.local[d.ref.Cluster] }); j >= 0 {
			g.warnf("%s: destination cluster %q has the name of a local cluster; no listener", path, dests[j].ref.Cluster)
			continue
		}
		for _, d := range dests {
			g.destinationCluster(d.ref, lb)
		}
		tcp := routeTo(tcpProxy(svc, g.timeouts.to(svc).idle), dests)
		l, err := listener(name, addr, o.Port, core.TrafficDirection_OUTBOUND, tcp)
		if err != nil {
			return err
		}
		g.listeners = append(g.listeners, l)
	}
	return nil
}

// route returns the TrafficRoute for traffic to service, nil for none.
func (g *gen) route(service string) *resource.TrafficRouteSpec {
	if len(g.routes) == 0 {
		return nil
	}
	if r, ok := g.routeCache[service]; ok {
		return r
	}
	r := selectRoute(g.routes, service)
	if g.routeCache == nil {
		g.routeCache = make(map[string]*resource.TrafficRouteSpec)
	}
	g.routeCache[service] = r
	return r
}

// destinationCluster adds the EDS cluster of ref unless an earlier outbound
// did: its connect timeout depends on its service only; its load balancer
// comes from the first route that used it.
func (g *gen) destinationCluster(ref EndpointRef, lb *resource.LoadBalancer) {
	if _, ok := g.clusters[ref.Cluster]; ok {
		return
	}
	g.clusters[ref.Cluster] = edsCluster(ref.Cluster, g.timeouts.to(ref.Service).connect, lb)
	g.refs = append(g.refs, ref)
}

func (g *gen) result() *Proxy {
	p := &Proxy{Listeners: g.listeners, Warnings: g.warnings, Endpoints: g.refs}
	slices.SortFunc(p.Listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.Name, b.Name) })
	p.Clusters = make([]*clusterv3.Cluster, 0, len(g.clusters))
	for _, c := range g.clusters {
		p.Clusters = append(p.Clusters, c)
	}
	slices.SortFunc(p.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(p.Endpoints, func(a, b EndpointRef) int { return cmp.Compare(a.Cluster, b.Cluster) })
	return p
}
