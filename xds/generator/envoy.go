package generator

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

const tcpProxyTypeURL = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"

// Deterministic, so that equal configs are equal bytes on every replica.
var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Envoy's limit on ring sizes.
const maxRingSize = 8388608

func socketAddress(addr string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

// listener builds a listener with one filter chain holding tcp, or no filter
// at all when tcp is nil (Envoy then closes every connection).
func listener(name, addr string, port uint32, dir core.TrafficDirection, tcp *tcpv3.TcpProxy) (*listenerv3.Listener, error) {
	chain := &listenerv3.FilterChain{}
	if tcp != nil {
		b, err := marshalOpts.Marshal(tcp)
		if err != nil {
			return nil, fmt.Errorf("listener %s: marshal tcp_proxy: %w", name, err)
		}
		chain.Filters = []*listenerv3.Filter{{
			Name:       wellknown.TCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: tcpProxyTypeURL, Value: b}},
		}}
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(addr, port),
		FilterChains:     []*listenerv3.FilterChain{chain},
		TrafficDirection: dir,
	}, nil
}

func tcpProxy(statPrefix string, idle time.Duration) *tcpv3.TcpProxy {
	return &tcpv3.TcpProxy{StatPrefix: sanitizeMetric(statPrefix), IdleTimeout: durationpb.New(idle)}
}

// routeTo points tcp at the destinations: one cluster, or weighted clusters.
// With none it returns nil: no tcp_proxy at all.
func routeTo(tcp *tcpv3.TcpProxy, dests []destination) *tcpv3.TcpProxy {
	switch len(dests) {
	case 0:
		return nil
	case 1:
		tcp.ClusterSpecifier = &tcpv3.TcpProxy_Cluster{Cluster: dests[0].ref.Cluster}
	default:
		ws := make([]*tcpv3.TcpProxy_WeightedCluster_ClusterWeight, len(dests))
		for i, d := range dests {
			ws[i] = &tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.ref.Cluster, Weight: d.weight}
		}
		tcp.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{
			WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{Clusters: ws},
		}
	}
	return tcp
}

// staticCluster reaches the application behind an inbound.
func staticCluster(name, addr string, port uint32, connect time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		AltStatName:          sanitizeMetric(name),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connect),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(addr, port)}},
			}}}},
		},
	}
}

// edsCluster is a destination cluster whose endpoints come over ADS.
func edsCluster(name string, connect time.Duration, lb *resource.LoadBalancer) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		AltStatName:          sanitizeMetric(name),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &core.ConfigSource{
			ResourceApiVersion:    core.ApiVersion_V3,
			ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		}},
		ConnectTimeout: durationpb.New(connect),
	}
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
