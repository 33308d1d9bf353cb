package envoy

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Thousands of proxies are regenerated on a policy change, so every
// listener and cluster is allocated as one block holding all its messages
// (a dozen allocations become one). The blocks are never copied after they
// are built; callers see ordinary message pointers.

const tcpProxyTypeURL = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"

// Envoy's limit on ring sizes.
const maxRingSize = 8388608

func setDuration(d *durationpb.Duration, v time.Duration) *durationpb.Duration {
	d.Seconds = int64(v / time.Second)
	d.Nanos = int32(v % time.Second)
	return d
}

// addressBlock is a TCP socket address.
type addressBlock struct {
	addr core.Address
	wrap core.Address_SocketAddress
	sock core.SocketAddress
	port core.SocketAddress_PortValue
}

func (b *addressBlock) init(addr string, port uint32) *core.Address {
	b.port.PortValue = port
	b.sock.Protocol = core.SocketAddress_TCP
	b.sock.Address = addr
	b.sock.PortSpecifier = &b.port
	b.wrap.SocketAddress = &b.sock
	b.addr.Address = &b.wrap
	return &b.addr
}

type listenerBlock struct {
	listener listenerv3.Listener
	addr     addressBlock
	chain    listenerv3.FilterChain
	chains   [1]*listenerv3.FilterChain
	filter   listenerv3.Filter
	filters  [1]*listenerv3.Filter
	typed    listenerv3.Filter_TypedConfig
	any      anypb.Any
}

// tcpProxy is the part of a tcp_proxy filter the generator sets.
type tcpProxy struct {
	statPrefix string
	idle       time.Duration
	dests      []destination // one: cluster; more: weighted_clusters
}

// Field numbers of envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
// and the messages inside it.
const (
	tcpStatPrefix       = 1
	tcpCluster          = 2
	tcpIdleTimeout      = 8
	tcpWeightedClusters = 10
	weightedClusters    = 1 // TcpProxy.WeightedCluster.clusters
	clusterWeightName   = 1 // ...ClusterWeight.name
	clusterWeightWeight = 2 // ...ClusterWeight.weight
	durationSeconds     = 1
	durationNanos       = 2
)

// appendTCPProxy appends the wire encoding of t, byte for byte what
// proto.MarshalOptions{Deterministic: true} makes of the equivalent TcpProxy
// (fields in number order, the oneof last; every test and the fuzz target
// hold the two together), without the reflection of a generic marshal.
func appendTCPProxy(b []byte, t *tcpProxy) []byte {
	if t.statPrefix != "" { // proto3: empty strings and zeros are not written
		b = protowire.AppendTag(b, tcpStatPrefix, protowire.BytesType)
		b = protowire.AppendString(b, t.statPrefix)
	}
	b = protowire.AppendTag(b, tcpIdleTimeout, protowire.BytesType)
	secs, nanos := uint64(t.idle/time.Second), uint64(t.idle%time.Second)
	n := 0
	if secs != 0 {
		n += protowire.SizeTag(durationSeconds) + protowire.SizeVarint(secs)
	}
	if nanos != 0 {
		n += protowire.SizeTag(durationNanos) + protowire.SizeVarint(nanos)
	}
	b = protowire.AppendVarint(b, uint64(n))
	if secs != 0 {
		b = protowire.AppendTag(b, durationSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, secs)
	}
	if nanos != 0 {
		b = protowire.AppendTag(b, durationNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, nanos)
	}
	// The cluster_specifier oneof goes last, as protobuf-go writes oneofs.
	if len(t.dests) == 1 { // a oneof member is written even when empty
		b = protowire.AppendTag(b, tcpCluster, protowire.BytesType)
		b = protowire.AppendString(b, t.dests[0].ref.Cluster)
	}
	if len(t.dests) > 1 {
		size := 0
		for _, d := range t.dests {
			cw := clusterWeightSize(d)
			size += protowire.SizeTag(weightedClusters) + protowire.SizeBytes(cw)
		}
		b = protowire.AppendTag(b, tcpWeightedClusters, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		for _, d := range t.dests {
			b = protowire.AppendTag(b, weightedClusters, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(clusterWeightSize(d)))
			if d.ref.Cluster != "" {
				b = protowire.AppendTag(b, clusterWeightName, protowire.BytesType)
				b = protowire.AppendString(b, d.ref.Cluster)
			}
			if d.weight != 0 {
				b = protowire.AppendTag(b, clusterWeightWeight, protowire.VarintType)
				b = protowire.AppendVarint(b, uint64(d.weight))
			}
		}
	}
	return b
}

// clusterWeightSize is the encoded size of one weighted cluster.
func clusterWeightSize(d destination) int {
	n := 0
	if d.ref.Cluster != "" {
		n += protowire.SizeTag(clusterWeightName) + protowire.SizeBytes(len(d.ref.Cluster))
	}
	if d.weight != 0 {
		n += protowire.SizeTag(clusterWeightWeight) + protowire.SizeVarint(uint64(d.weight))
	}
	return n
}

// message is the TcpProxy t encodes, for tests and for anyone who wants the
// message rather than its bytes.
func (t *tcpProxy) message() *tcpv3.TcpProxy {
	m := &tcpv3.TcpProxy{StatPrefix: t.statPrefix, IdleTimeout: durationpb.New(t.idle)}
	if len(t.dests) == 1 {
		m.ClusterSpecifier = &tcpv3.TcpProxy_Cluster{Cluster: t.dests[0].ref.Cluster}
	} else if len(t.dests) > 1 {
		wc := &tcpv3.TcpProxy_WeightedCluster{}
		for _, d := range t.dests {
			wc.Clusters = append(wc.Clusters, &tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.ref.Cluster, Weight: d.weight})
		}
		m.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return m
}

// listenerBuilder builds listeners; the encoded tcp_proxies of all of them
// share one buffer, each Any holding a capped slice of it.
type listenerBuilder struct {
	buf []byte
}

// listener builds a listener with one filter chain holding tcp, or no filter
// at all when tcp has no destination (Envoy then closes every connection).
func (lb *listenerBuilder) listener(name, addr string, port uint32, dir core.TrafficDirection, tcp *tcpProxy) *listenerv3.Listener {
	b := &listenerBlock{}
	if len(tcp.dests) > 0 {
		start := len(lb.buf)
		lb.buf = appendTCPProxy(lb.buf, tcp)
		b.any.TypeUrl = tcpProxyTypeURL
		b.any.Value = lb.buf[start:len(lb.buf):len(lb.buf)]
		b.typed.TypedConfig = &b.any
		b.filter.Name = wellknown.TCPProxy
		b.filter.ConfigType = &b.typed
		b.filters[0] = &b.filter
		b.chain.Filters = b.filters[:]
	}
	b.chains[0] = &b.chain
	l := &b.listener // fields one by one: b is zeroed, a literal would copy the whole struct
	l.Name = name
	l.Address = b.addr.init(addr, port)
	l.FilterChains = b.chains[:]
	l.TrafficDirection = dir
	return l
}

type staticClusterBlock struct {
	cluster clusterv3.Cluster
	typ     clusterv3.Cluster_Type
	connect durationpb.Duration
	cla     endpointv3.ClusterLoadAssignment
	loc     endpointv3.LocalityLbEndpoints
	locs    [1]*endpointv3.LocalityLbEndpoints
	lb      endpointv3.LbEndpoint
	lbs     [1]*endpointv3.LbEndpoint
	host    endpointv3.LbEndpoint_Endpoint
	ep      endpointv3.Endpoint
	addr    addressBlock
}

// staticCluster reaches the application behind an inbound.
func staticCluster(name, addr string, port uint32, connect time.Duration) *clusterv3.Cluster {
	b := &staticClusterBlock{}
	b.ep.Address = b.addr.init(addr, port)
	b.host.Endpoint = &b.ep
	b.lb.HostIdentifier = &b.host
	b.lbs[0] = &b.lb
	b.loc.LbEndpoints = b.lbs[:]
	b.locs[0] = &b.loc
	b.cla.ClusterName = name
	b.cla.Endpoints = b.locs[:]
	b.typ.Type = clusterv3.Cluster_STATIC
	c := &b.cluster
	c.Name = name
	c.AltStatName = sanitizeMetric(name)
	c.ClusterDiscoveryType = &b.typ
	c.ConnectTimeout = setDuration(&b.connect, connect)
	c.LoadAssignment = &b.cla
	return c
}

type edsClusterBlock struct {
	cluster clusterv3.Cluster
	typ     clusterv3.Cluster_Type
	connect durationpb.Duration
	eds     clusterv3.Cluster_EdsClusterConfig
	source  core.ConfigSource
	ads     core.ConfigSource_Ads
	agg     core.AggregatedConfigSource
}

// edsCluster is a destination cluster whose endpoints come over ADS.
func edsCluster(name string, connect time.Duration, lb *resource.LoadBalancer) *clusterv3.Cluster {
	b := &edsClusterBlock{}
	b.ads.Ads = &b.agg
	b.source.ResourceApiVersion = core.ApiVersion_V3
	b.source.ConfigSourceSpecifier = &b.ads
	b.eds.EdsConfig = &b.source
	b.typ.Type = clusterv3.Cluster_EDS
	c := &b.cluster
	c.Name = name
	c.AltStatName = sanitizeMetric(name)
	c.ClusterDiscoveryType = &b.typ
	c.EdsClusterConfig = &b.eds
	c.ConnectTimeout = setDuration(&b.connect, connect)
	applyLoadBalancer(c, lb)
	return c
}

// applyLoadBalancer sets a TrafficRoute's loadBalancer, as Kuma's LB
// configurer does. Values Envoy would reject are left out (Envoy's defaults
// apply); several policies set at once (invalid) count as round robin.
func applyLoadBalancer(c *clusterv3.Cluster, lb *resource.LoadBalancer) {
	if lb == nil {
		return
	}
	set := 0
	for _, b := range []bool{lb.RoundRobin != nil, lb.LeastRequest != nil, lb.RingHash != nil, lb.Random != nil, lb.Maglev != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return
	}
	switch {
	case lb.LeastRequest != nil:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		if n := lb.LeastRequest.ChoiceCount; n >= 2 {
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
				ChoiceCount: wrapperspb.UInt32(n),
			}}
		}
	case lb.RingHash != nil:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		rh := lb.RingHash
		cfg := &clusterv3.Cluster_RingHashLbConfig{}
		if rh.HashFunction == "MURMUR_HASH_2" {
			cfg.HashFunction = clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2
		}
		minSize, maxSize := rh.MinRingSize, rh.MaxRingSize
		if minSize <= maxRingSize && maxSize <= maxRingSize && (maxSize == 0 || minSize <= maxSize) {
			if minSize != 0 {
				cfg.MinimumRingSize = wrapperspb.UInt64(minSize)
			}
			if maxSize != 0 {
				cfg.MaximumRingSize = wrapperspb.UInt64(maxSize)
			}
		}
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: cfg}
	case lb.Random != nil:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case lb.Maglev != nil:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
	}
}
