// Package envoy turns the replicated state into Envoy resources for one
// proxy. It is pure: the same Input gives the same output, byte for byte
// (every list is sorted, no map order leaks), so any replica generates the
// same config for the same state.
//
// What it makes, with Kuma's names:
//
//   - per inbound, a listener `inbound:{address}:{port}` with a TCP proxy to
//     the local cluster `localhost:{servicePort}` (STATIC, serviceAddress or
//     127.0.0.1);
//   - per outbound, a listener `outbound:{address}:{port}` with a TCP proxy to
//     the destination: the cluster named after the service, or the weighted
//     clusters of the TrafficRoute that applies (a split destination with
//     more tags than kuma.io/service gets a subset cluster
//     `{service}-{hash of its tags}`);
//   - per destination cluster, an EDS cluster over ADS whose
//     ClusterLoadAssignment (LoadAssignment) is shared by every proxy of the
//     mesh that needs it;
//   - MeshTimeout, as Kuma's plugin applies it to TCP: connectionTimeout is
//     the cluster connect timeout, idleTimeout the TCP proxy idle timeout;
//     `to` entries for outbounds, `from` entries for inbounds.
//
// Gateways and transparent proxying get nothing special: a gateway
// Dataplane gets its outbounds only.
package envoy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Kuma's defaults when no MeshTimeout applies (its default policy for TCP).
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultIdleTimeout    = time.Hour
)

// Input is everything one proxy's config depends on, read from one
// consistent view of the state.
type Input struct {
	Mesh     *resource.Resource   // the proxy's Mesh
	Proxy    *resource.Resource   // its Dataplane
	Routes   []*resource.Resource // TrafficRoutes of the mesh, sorted by name
	Timeouts []*resource.Resource // MeshTimeouts of the mesh, sorted by name
}

// EndpointRef names one EDS cluster a proxy needs and what selects its endpoints.
type EndpointRef struct {
	Cluster string            // cluster and ClusterLoadAssignment name (unique within the mesh)
	Service string            // kuma.io/service
	Tags    map[string]string // further tags an endpoint's inbound must carry; nil for the service cluster
}

// Proxy is one proxy's generated config.
type Proxy struct {
	Listeners []*listenerv3.Listener // sorted by name
	Clusters  []*clusterv3.Cluster   // sorted by name
	Endpoints []EndpointRef          // EDS clusters it needs, sorted by Cluster, unique
}

// Generate builds the listeners and clusters of in.Proxy.
func Generate(in Input) (*Proxy, error) {
	if in.Proxy == nil {
		return nil, errors.New("generate: no Dataplane")
	}
	dp, ok := in.Proxy.Spec.(*resource.DataplaneSpec)
	if !ok || dp == nil {
		return nil, fmt.Errorf("generate: %s: spec is %T, not a Dataplane", in.Proxy.Key(), in.Proxy.Spec)
	}
	g := &gen{in: in, dp: dp, clusters: map[string]*clusterv3.Cluster{}, refs: map[string]EndpointRef{}}
	g.timeouts = newTimeoutRules(in.Timeouts, dp, in.Proxy.Name)
	out := &Proxy{}
	if !dp.IsGateway() {
		for i := range dp.Networking.Inbound {
			l, err := g.inbound(&dp.Networking.Inbound[i])
			if err != nil {
				return nil, fmt.Errorf("generate %s: networking.inbound[%d]: %w", in.Proxy.Key(), i, err)
			}
			if l != nil {
				out.Listeners = append(out.Listeners, l)
			}
		}
	}
	for i := range dp.Networking.Outbound {
		l, err := g.outbound(&dp.Networking.Outbound[i])
		if err != nil {
			return nil, fmt.Errorf("generate %s: networking.outbound[%d]: %w", in.Proxy.Key(), i, err)
		}
		if l != nil {
			out.Listeners = append(out.Listeners, l)
		}
	}
	out.Listeners = uniqueByName(out.Listeners, func(l *listenerv3.Listener) string { return l.GetName() })
	for _, name := range slices.Sorted(maps.Keys(g.clusters)) {
		out.Clusters = append(out.Clusters, g.clusters[name])
	}
	for _, name := range slices.Sorted(maps.Keys(g.refs)) {
		out.Endpoints = append(out.Endpoints, g.refs[name])
	}
	return out, nil
}

type gen struct {
	in       Input
	dp       *resource.DataplaneSpec
	timeouts *timeoutRules
	clusters map[string]*clusterv3.Cluster
	refs     map[string]EndpointRef
}

func (g *gen) proxyAddress() string { return g.dp.Networking.Address }

func (g *gen) inbound(in *resource.Inbound) (*listenerv3.Listener, error) {
	if in.State == resource.InboundIgnored {
		return nil, nil
	}
	addr := cmp.Or(in.Address, g.proxyAddress())
	if addr == "" || in.Port == 0 {
		return nil, errors.New("no address or port")
	}
	svcPort := in.EffectiveServicePort()
	local := "localhost:" + strconv.FormatUint(uint64(svcPort), 10)
	svc := in.Tags[resource.ServiceTag]
	t := g.timeouts.from(svc)
	if _, ok := g.clusters[local]; !ok {
		g.clusters[local] = &clusterv3.Cluster{
			Name:                 local,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(t.connect),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: local,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
					lbEndpoint(cmp.Or(in.ServiceAddress, "127.0.0.1"), svcPort),
				}}},
			},
		}
	}
	name := "inbound:" + joinHostPort(addr, in.Port)
	tcp := &tcpv3.TcpProxy{
		StatPrefix:       statPrefix(local),
		ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: local},
		IdleTimeout:      durationpb.New(t.idle),
	}
	return listener(name, addr, in.Port, core.TrafficDirection_INBOUND, tcp)
}

func (g *gen) outbound(o *resource.Outbound) (*listenerv3.Listener, error) {
	svc := o.ServiceName()
	if svc == "" {
		return nil, nil // backendRef outbounds (MeshService) are not generated yet
	}
	addr := cmp.Or(o.Address, resource.DefaultOutboundAddress)
	if o.Port == 0 {
		return nil, errors.New("no port")
	}
	t := g.timeouts.to(svc)
	dests := g.destinations(svc)
	tcp := &tcpv3.TcpProxy{StatPrefix: statPrefix(svc), IdleTimeout: durationpb.New(t.idle)}
	if len(dests) == 1 {
		tcp.ClusterSpecifier = &tcpv3.TcpProxy_Cluster{Cluster: g.edsCluster(dests[0].ref, t)}
	} else {
		wc := &tcpv3.TcpProxy_WeightedCluster{}
		for _, d := range dests {
			wc.Clusters = append(wc.Clusters, &tcpv3.TcpProxy_WeightedCluster_ClusterWeight{
				Name: g.edsCluster(d.ref, t), Weight: d.weight})
		}
		tcp.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return listener("outbound:"+joinHostPort(addr, o.Port), addr, o.Port, core.TrafficDirection_OUTBOUND, tcp)
}

// edsCluster registers the EDS cluster for ref and returns its name.
func (g *gen) edsCluster(ref EndpointRef, t timeouts) string {
	if _, ok := g.clusters[ref.Cluster]; !ok {
		g.clusters[ref.Cluster] = &clusterv3.Cluster{
			Name:                 ref.Cluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &core.ConfigSource{
				ResourceApiVersion:    core.ApiVersion_V3,
				ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
			}},
			ConnectTimeout: durationpb.New(t.connect),
			LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
		}
		g.refs[ref.Cluster] = ref
	}
	return ref.Cluster
}

type destination struct {
	ref    EndpointRef
	weight uint32
}

// destinations applies the TrafficRoute that selects this proxy and svc.
func (g *gen) destinations(svc string) []destination {
	plain := []destination{{ref: EndpointRef{Cluster: svc, Service: svc}, weight: 1}}
	route := g.route(svc)
	if route == nil || route.Conf == nil {
		return plain
	}
	if len(route.Conf.Split) > 0 {
		var out []destination
		for _, sp := range route.Conf.Split {
			if sp.Weight == nil || *sp.Weight == 0 {
				continue
			}
			out = append(out, destination{ref: subsetRef(svc, sp.Destination), weight: *sp.Weight})
		}
		if len(out) == 0 {
			return plain // every weight is zero: Kuma sends to the plain service
		}
		// Identical destinations in two entries add up.
		slices.SortStableFunc(out, func(a, b destination) int { return cmp.Compare(a.ref.Cluster, b.ref.Cluster) })
		merged := out[:1]
		for _, d := range out[1:] {
			if last := &merged[len(merged)-1]; last.ref.Cluster == d.ref.Cluster {
				last.weight += d.weight
			} else {
				merged = append(merged, d)
			}
		}
		return merged
	}
	if len(route.Conf.Destination) > 0 {
		return []destination{{ref: subsetRef(svc, route.Conf.Destination), weight: 1}}
	}
	return plain
}

// subsetRef is the cluster for a destination selector: the service's own
// cluster, or a subset cluster named after the extra tags.
func subsetRef(svc string, dest map[string]string) EndpointRef {
	service := dest[resource.ServiceTag]
	if service == "" || service == "*" {
		service = svc
	}
	extra := map[string]string{}
	for k, v := range dest {
		if k != resource.ServiceTag && v != "*" {
			extra[k] = v
		}
	}
	if len(extra) == 0 {
		return EndpointRef{Cluster: service, Service: service}
	}
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		fmt.Fprintf(h, "%s=%s;", k, extra[k])
	}
	return EndpointRef{Cluster: service + "-" + hex.EncodeToString(h.Sum(nil))[:8], Service: service, Tags: extra}
}

// route picks the TrafficRoute for (this proxy, svc): every source and
// destination selector must match; the most specific match wins (more exact
// tags, then fewer wildcards), then the name.
func (g *gen) route(svc string) *resource.TrafficRouteSpec {
	var best *resource.TrafficRouteSpec
	bestScore := [2]int{-1, 0}
	dst := map[string]string{resource.ServiceTag: svc}
	for _, r := range g.in.Routes {
		spec, ok := r.Spec.(*resource.TrafficRouteSpec)
		if !ok || spec == nil {
			continue
		}
		srcScore, ok := bestSelector(spec.Sources, g.inboundTags())
		if !ok {
			continue
		}
		dstScore, ok := bestSelector(spec.Destinations, []map[string]string{dst})
		if !ok {
			continue
		}
		score := [2]int{srcScore[0] + dstScore[0], srcScore[1] + dstScore[1]}
		// Routes are sorted by name, so on a tie the first name stays.
		if score[0] > bestScore[0] || (score[0] == bestScore[0] && score[1] > bestScore[1]) {
			best, bestScore = spec, score
		}
	}
	return best
}

func (g *gen) inboundTags() []map[string]string {
	var out []map[string]string
	for _, in := range g.dp.Networking.Inbound {
		out = append(out, in.Tags)
	}
	if g.dp.Networking.Gateway != nil {
		out = append(out, g.dp.Networking.Gateway.Tags)
	}
	return out
}

// bestSelector returns the score (exact tags, -wildcards) of the best
// selector matching any of the tag sets.
func bestSelector(sels []resource.Selector, tagSets []map[string]string) ([2]int, bool) {
	best, found := [2]int{-1, 0}, false
	for _, sel := range sels {
		for _, tags := range tagSets {
			exact, wild, ok := matchSelector(sel.Match, tags)
			if !ok {
				continue
			}
			s := [2]int{exact, -wild}
			if !found || s[0] > best[0] || (s[0] == best[0] && s[1] > best[1]) {
				best, found = s, true
			}
		}
	}
	return best, found
}

func matchSelector(match, tags map[string]string) (exact, wild int, ok bool) {
	for k, v := range match {
		if v == "*" {
			wild++
			continue
		}
		if tags[k] != v {
			return 0, 0, false
		}
		exact++
	}
	return exact, wild, true
}

// LoadAssignment builds the ClusterLoadAssignment for ref from the
// Dataplanes providing ref.Service (sorted by name): every healthy inbound
// with the service and ref's tags, at its address and port.
func LoadAssignment(ref EndpointRef, dataplanes []*resource.Resource) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: ref.Cluster}
	var eps []*endpointv3.LbEndpoint
	for _, r := range dataplanes {
		dp, ok := r.Spec.(*resource.DataplaneSpec)
		if !ok || dp == nil {
			continue
		}
		for _, in := range dp.Networking.Inbound {
			if in.Tags[resource.ServiceTag] != ref.Service || !healthy(&in) || !hasTags(in.Tags, ref.Tags) {
				continue
			}
			addr := cmp.Or(in.Address, dp.Networking.AdvertisedAddress, dp.Networking.Address)
			if addr == "" || in.Port == 0 {
				continue
			}
			eps = append(eps, lbEndpoint(addr, in.Port))
		}
	}
	if len(eps) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}
	}
	return cla
}

func healthy(in *resource.Inbound) bool {
	switch in.State {
	case resource.InboundNotReady, resource.InboundIgnored:
		return false
	}
	return in.Health == nil || in.Health.Ready
}

func hasTags(tags, want map[string]string) bool {
	for k, v := range want {
		if tags[k] != v {
			return false
		}
	}
	return true
}

func lbEndpoint(addr string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: socketAddress(addr, port),
	}}}
}

func socketAddress(addr string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol: core.SocketAddress_TCP, Address: addr,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

func listener(name, addr string, port uint32, dir core.TrafficDirection, tcp *tcpv3.TcpProxy) (*listenerv3.Listener, error) {
	cfg, err := anypb.New(tcp)
	if err != nil {
		return nil, fmt.Errorf("tcp proxy: %w", err)
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(addr, port),
		TrafficDirection: dir,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       wellknown.TCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
		}}}},
		// Kuma binds outbound listeners without transparent proxying.
		BindToPort: wrapperspb.Bool(true),
	}, nil
}

// joinHostPort formats addr:port, bracketing IPv6 as Kuma's names do.
func joinHostPort(addr string, port uint32) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + strconv.FormatUint(uint64(port), 10)
	}
	return addr + ":" + strconv.FormatUint(uint64(port), 10)
}

// statPrefix makes a name safe for Envoy stats (Kuma replaces ':' and '.').
func statPrefix(name string) string {
	return strings.NewReplacer(":", "_", ".", "_").Replace(name)
}

func uniqueByName[T any](in []T, name func(T) string) []T {
	slices.SortStableFunc(in, func(a, b T) int { return cmp.Compare(name(a), name(b)) })
	return slices.CompactFunc(in, func(a, b T) bool { return name(a) == name(b) })
}
