package envoy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

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
		dp:       dp,
		routes:   routeCandidates(in.Routes, dp),
		timeouts: newTimeoutRules(in.Timeouts, in.Proxy, dp),
		clusters: make(map[string]*clusterv3.Cluster, len(dp.Networking.Inbound)+len(dp.Networking.Outbound)),
		local:    make(map[string]bool, len(dp.Networking.Inbound)),
		names:    make(map[string]struct{}, len(dp.Networking.Inbound)+len(dp.Networking.Outbound)),
	}
	g.listeners = make([]*listenerv3.Listener, 0, len(dp.Networking.Inbound)+len(dp.Networking.Outbound))
	g.refs = make([]EndpointRef, 0, len(dp.Networking.Outbound))
	g.builder.buf = make([]byte, 0, 64*(len(dp.Networking.Inbound)+len(dp.Networking.Outbound)))
	g.inbounds()
	g.outbounds()
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
	dp       *resource.DataplaneSpec
	routes   []routeCandidate
	timeouts *timeoutRules

	listeners []*listenerv3.Listener
	names     map[string]struct{} // of the listeners
	clusters  map[string]*clusterv3.Cluster
	local     map[string]bool // names of the local (STATIC) clusters
	refs      []EndpointRef
	warnings  []string

	routeCache map[string]*resource.TrafficRouteSpec
	builder    listenerBuilder
	dests      []destination // of the outbound in hand
}

func (g *gen) warnf(format string, args ...any) {
	g.warnings = append(g.warnings, fmt.Sprintf(format, args...))
}

func (g *gen) hasListener(name string) bool {
	_, ok := g.names[name]
	return ok
}

func (g *gen) addListener(l *listenerv3.Listener) {
	g.listeners = append(g.listeners, l)
	g.names[l.Name] = struct{}{}
}

// inboundPlan is an inbound that will get a listener.
type inboundPlan struct {
	index    int
	addr     string // the listener's address
	workload string // the application's address
	svcPort  uint32
}

func (g *gen) inbounds() {
	ins := g.dp.Networking.Inbound
	plans := make([]inboundPlan, 0, len(ins))
	for i := range ins {
		in := &ins[i]
		if in.State == resource.InboundIgnored {
			continue // Kuma creates nothing for an ignored inbound
		}
		p := inboundPlan{index: i, addr: cmp.Or(in.Address, g.dp.Networking.Address), svcPort: in.EffectiveServicePort()}
		p.workload = cmp.Or(in.ServiceAddress, defaultWorkloadAddress)
		switch {
		case !isIP(p.addr):
			g.warnf("networking.inbound[%d]: address %q is not an IP address; no listener", i, p.addr)
		case !validPort(in.Port):
			g.warnf("networking.inbound[%d]: port %d is out of range; no listener", i, in.Port)
		case !validPort(p.svcPort):
			g.warnf("networking.inbound[%d]: servicePort %d is out of range; no listener", i, p.svcPort)
		case !isIP(p.workload):
			g.warnf("networking.inbound[%d]: serviceAddress %q is not an IP address; no listener", i, p.workload)
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
			setDuration(c.ConnectTimeout, t.connect) // the last inbound decides, as in Kuma
		} else {
			g.clusters[local] = staticCluster(local, p.workload, p.svcPort, t.connect)
			g.local[local] = true
		}
		tcp := tcpProxy{statPrefix: sanitizeMetric(local), idle: t.idle, dests: []destination{{ref: EndpointRef{Cluster: local}}}}
		g.addListener(g.builder.listener(name, p.addr, in.Port, core.TrafficDirection_INBOUND, &tcp))
	}
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

func (g *gen) outbounds() {
	for i := range g.dp.Networking.Outbound {
		o := &g.dp.Networking.Outbound[i]
		svc := o.ServiceName()
		addr := cmp.Or(o.Address, resource.DefaultOutboundAddress)
		switch {
		case svc == "" && o.BackendRef != nil:
			g.warnf("networking.outbound[%d]: backendRef outbounds are not generated", i)
			continue
		case svc == "":
			g.warnf("networking.outbound[%d]: no %s tag; no listener", i, resource.ServiceTag)
			continue
		case !utf8.ValidString(svc) || !validTags(o.Tags):
			g.warnf("networking.outbound[%d]: tags are not valid UTF-8; no listener", i)
			continue
		case !isIP(addr):
			g.warnf("networking.outbound[%d]: address %q is not an IP address; no listener", i, addr)
			continue
		case !validPort(o.Port):
			g.warnf("networking.outbound[%d]: port %d is out of range; no listener", i, o.Port)
			continue
		}
		name := OutboundListenerName(addr, o.Port)
		if g.hasListener(name) {
			g.warnf("networking.outbound[%d]: listener %s is already defined by an earlier outbound; skipped", i, name)
			continue
		}
		outTags := o.Tags
		if outTags[resource.ServiceTag] != svc { // the legacy service field
			outTags = map[string]string{resource.ServiceTag: svc}
		}
		route := g.route(svc)
		dests := g.dests[:0]
		var lb *resource.LoadBalancer
		if route == nil {
			dests = append(dests, destination{ref: EndpointRef{Cluster: svc, Service: svc}, weight: 1})
		} else {
			dests = splitDestinations(dests, route, outTags)
			lb = route.Conf.LoadBalancer
		}
		g.dests = dests
		if j := slices.IndexFunc(dests, func(d destination) bool { return g.local[d.ref.Cluster] }); j >= 0 {
			g.warnf("networking.outbound[%d]: destination cluster %q has the name of a local cluster; no listener", i, dests[j].ref.Cluster)
			continue
		}
		for _, d := range dests {
			g.destinationCluster(d.ref, lb)
		}
		tcp := tcpProxy{statPrefix: sanitizeMetric(svc), idle: g.timeouts.to(svc).idle, dests: dests}
		g.addListener(g.builder.listener(name, addr, o.Port, core.TrafficDirection_OUTBOUND, &tcp))
	}
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
