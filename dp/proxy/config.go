package proxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Config is one complete xDS config (the maps are not modified by the proxy).
type Config struct {
	Listeners map[string]*listenerv3.Listener
	Clusters  map[string]*clusterv3.Cluster
	Endpoints map[string]*endpointv3.ClusterLoadAssignment // by cluster / EDS service name
}

// Envoy's defaults.
const (
	DefaultConnectTimeout = 5 * time.Second // cluster connect_timeout unset
	DefaultIdleTimeout    = time.Hour       // tcp_proxy idle_timeout unset
)

// Names the proxy recognises for the TCP proxy filter; Envoy selects the
// extension by the typed config's type, the name is informative.
const (
	tcpProxyFilter       = "envoy.filters.network.tcp_proxy"
	tcpProxyFilterLegacy = "envoy.tcp_proxy"
)

var tcpProxyTypeURL = "type.googleapis.com/" + string((&tcpv3.TcpProxy{}).ProtoReflect().Descriptor().FullName())

// Directions as Status reports them.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// plan is a validated Config in the form the proxy runs it.
type plan struct {
	listeners map[string]*listenerSpec
	clusters  map[string]*clusterSpec
}

type listenerSpec struct {
	name string
	addr string // ip:port as configured, the IP in canonical form
	dir  string // DirectionInbound, DirectionOutbound or ""
	tcp  tcpSpec
}

// tcpSpec is a listener's routing: its tcp_proxy, or no filter at all.
type tcpSpec struct {
	reject   bool // the filter chain has no filter: Envoy closes every connection
	cluster  string
	weighted []weightedSpec
	idle     time.Duration // 0: disabled
}

type weightedSpec struct {
	cluster string
	weight  uint32
}

// maxRingSize is Envoy's upper bound of ring_hash_lb_config's ring sizes.
const maxRingSize = 8 * 1024 * 1024

type lbPolicy int

const (
	lbRoundRobin lbPolicy = iota
	lbLeastRequest
	lbRandom
	// lbHash is RING_HASH or MAGLEV. A tcp_proxy without hash_policy gives
	// them no hash key, so Envoy picks a host at random; the proxy does the
	// same.
	lbHash
)

func (p lbPolicy) String() string {
	switch p {
	case lbLeastRequest:
		return "LEAST_REQUEST"
	case lbRandom:
		return "RANDOM"
	case lbHash:
		return "HASH"
	}
	return "ROUND_ROBIN"
}

// defaultChoiceCount is Envoy's least_request_lb_config.choice_count when unset.
const defaultChoiceCount = 2

type clusterSpec struct {
	name           string
	connectTimeout time.Duration
	lb             lbPolicy
	choices        int      // LEAST_REQUEST: endpoints compared per pick (choice_count)
	endpoints      []string // ip:port of the endpoints that may receive traffic
}

// Validate reports whether the proxy can run cfg: every listener, filter,
// cluster and load assignment shape it does not support is an error naming
// the resource and the field. A cluster that a listener names but that is
// missing is not an error: connections to it are closed, as Envoy does.
func Validate(cfg Config) error {
	_, err := compile(cfg)
	return err
}

// validator collects the errors of one Config.
type validator struct {
	errs []error
}

func (v *validator) add(resource, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	v.errs = append(v.errs, fmt.Errorf("%s: %s", resource, msg))
}

// only reports every populated field of m not in allowed, and unknown fields.
func (v *validator) only(resource, path string, m proto.Message, allowed ...protoreflect.Name) {
	r := m.ProtoReflect()
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, fd.Name()) {
			v.add(resource, join(path, string(fd.Name())), "unsupported field")
		}
		return true
	})
	if len(r.GetUnknown()) > 0 {
		v.add(resource, path, "unknown fields (newer Envoy API?)")
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func compile(cfg Config) (*plan, error) {
	v := &validator{}
	p := &plan{listeners: map[string]*listenerSpec{}, clusters: map[string]*clusterSpec{}}
	byAddr := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(cfg.Listeners)) {
		l := v.listener(key, cfg.Listeners[key])
		if l == nil {
			continue
		}
		if other, dup := byAddr[l.addr]; dup && !hasPortZero(l.addr) {
			v.add(fmt.Sprintf("listener %q", key), "address", "%s is also the address of listener %q", l.addr, other)
			continue
		}
		byAddr[l.addr] = key
		p.listeners[key] = l
	}
	for _, key := range slices.Sorted(maps.Keys(cfg.Endpoints)) {
		v.loadAssignment(fmt.Sprintf("cluster load assignment %q", key), "", key, cfg.Endpoints[key])
	}
	for _, key := range slices.Sorted(maps.Keys(cfg.Clusters)) {
		if c := v.cluster(key, cfg.Clusters[key], cfg.Endpoints); c != nil {
			p.clusters[key] = c
		}
	}
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return p, nil
}

func hasPortZero(addr string) bool {
	_, port, _ := net.SplitHostPort(addr)
	return port == "0"
}

func (v *validator) listener(key string, l *listenerv3.Listener) *listenerSpec {
	res := fmt.Sprintf("listener %q", key)
	if l == nil {
		v.add(res, "", "nil")
		return nil
	}
	n := len(v.errs)
	if l.GetName() != key {
		v.add(res, "name", "%q does not match the key it is stored under", l.GetName())
	}
	v.only(res, "", l, "name", "address", "filter_chains", "traffic_direction", "bind_to_port", "stat_prefix", "metadata")
	addr := v.socketAddress(res, "address", l.GetAddress(), true)
	if b := l.GetBindToPort(); b != nil && !b.GetValue() {
		v.add(res, "bind_to_port", "false is not supported: the built-in proxy binds every listener")
	}
	spec := &listenerSpec{name: key, addr: addr}
	switch l.GetTrafficDirection() {
	case core.TrafficDirection_INBOUND:
		spec.dir = DirectionInbound
	case core.TrafficDirection_OUTBOUND:
		spec.dir = DirectionOutbound
	}
	if len(l.GetFilterChains()) != 1 {
		v.add(res, "filter_chains", "%d filter chains, the built-in proxy supports exactly one", len(l.GetFilterChains()))
	} else {
		spec.tcp = v.filterChain(res, "filter_chains[0]", l.GetFilterChains()[0])
	}
	if len(v.errs) > n {
		return nil
	}
	return spec
}

func (v *validator) filterChain(res, path string, fc *listenerv3.FilterChain) tcpSpec {
	if fc == nil {
		v.add(res, path, "nil")
		return tcpSpec{}
	}
	v.only(res, path, fc, "filters", "name", "metadata")
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return tcpSpec{reject: true}
	}
	var spec tcpSpec
	for i, f := range filters {
		fpath := fmt.Sprintf("%s.filters[%d]", path, i)
		if f == nil {
			v.add(res, fpath, "nil")
			continue
		}
		v.only(res, fpath, f, "name", "typed_config")
		tc := f.GetTypedConfig()
		switch {
		case tc == nil && (f.GetName() == tcpProxyFilter || f.GetName() == tcpProxyFilterLegacy):
			v.add(res, join(fpath, "typed_config"), "required")
			continue
		case tc == nil:
			v.add(res, fpath, "unsupported filter %q", f.GetName())
			continue
		case tc.GetTypeUrl() != tcpProxyTypeURL:
			v.add(res, fpath, "unsupported filter %q (%s)", f.GetName(), tc.GetTypeUrl())
			continue
		case i != len(filters)-1:
			v.add(res, fpath, "tcp_proxy is a terminal filter and must be the last one")
			continue
		}
		tcp := &tcpv3.TcpProxy{}
		if err := tc.UnmarshalTo(tcp); err != nil {
			v.add(res, join(fpath, "typed_config"), "decode TcpProxy: %v", err)
			continue
		}
		spec = v.tcpProxy(res, join(fpath, "typed_config"), tcp)
	}
	return spec
}

func (v *validator) tcpProxy(res, path string, tcp *tcpv3.TcpProxy) tcpSpec {
	v.only(res, path, tcp, "stat_prefix", "cluster", "weighted_clusters", "idle_timeout")
	spec := tcpSpec{idle: DefaultIdleTimeout}
	if d := tcp.GetIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			v.add(res, join(path, "idle_timeout"), "invalid duration %v", d)
		}
		spec.idle = d.AsDuration()
	}
	switch cs := tcp.GetClusterSpecifier().(type) {
	case *tcpv3.TcpProxy_Cluster:
		if cs.Cluster == "" {
			v.add(res, join(path, "cluster"), "empty cluster name")
		}
		spec.cluster = cs.Cluster
	case *tcpv3.TcpProxy_WeightedClusters:
		wpath := join(path, "weighted_clusters")
		v.only(res, wpath, cs.WeightedClusters, "clusters")
		cws := cs.WeightedClusters.GetClusters()
		if len(cws) == 0 {
			v.add(res, join(wpath, "clusters"), "no cluster")
		}
		for i, cw := range cws {
			cpath := fmt.Sprintf("%s.clusters[%d]", wpath, i)
			if cw == nil {
				v.add(res, cpath, "nil")
				continue
			}
			v.only(res, cpath, cw, "name", "weight")
			if cw.GetName() == "" {
				v.add(res, join(cpath, "name"), "empty cluster name")
			}
			if cw.GetWeight() == 0 {
				v.add(res, join(cpath, "weight"), "must be at least 1")
			}
			spec.weighted = append(spec.weighted, weightedSpec{cluster: cw.GetName(), weight: cw.GetWeight()})
		}
	default:
		v.add(res, path, "no cluster or weighted_clusters")
	}
	return spec
}

// socketAddress checks a TCP socket address with an IP literal and returns
// it as ip:port. Port 0 is allowed for listeners (an ephemeral port).
func (v *validator) socketAddress(res, path string, a *core.Address, listener bool) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		if a == nil {
			v.add(res, path, "required")
		} else {
			v.add(res, path, "only socket_address is supported")
		}
		return ""
	}
	v.only(res, path, a, "socket_address")
	path = join(path, "socket_address")
	v.only(res, path, sa, "protocol", "address", "port_value")
	if sa.GetProtocol() != core.SocketAddress_TCP {
		v.add(res, join(path, "protocol"), "only TCP is supported, not %s", sa.GetProtocol())
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil || ip.Zone() != "" {
		v.add(res, join(path, "address"), "%q is not an IP address", sa.GetAddress())
		return ""
	}
	port := sa.GetPortValue()
	if port > 65535 || (port == 0 && !listener) {
		v.add(res, join(path, "port_value"), "%d is not a port", port)
		return ""
	}
	return net.JoinHostPort(ip.Unmap().String(), strconv.FormatUint(uint64(port), 10))
}

func (v *validator) cluster(key string, c *clusterv3.Cluster, eds map[string]*endpointv3.ClusterLoadAssignment) *clusterSpec {
	res := fmt.Sprintf("cluster %q", key)
	if c == nil {
		v.add(res, "", "nil")
		return nil
	}
	n := len(v.errs)
	if c.GetName() != key {
		v.add(res, "name", "%q does not match the key it is stored under", c.GetName())
	}
	allowed := []protoreflect.Name{"name", "alt_stat_name", "type", "connect_timeout", "lb_policy", "metadata"}
	spec := &clusterSpec{name: key, connectTimeout: DefaultConnectTimeout}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
	case clusterv3.Cluster_RANDOM:
		spec.lb = lbRandom
	case clusterv3.Cluster_LEAST_REQUEST:
		spec.lb = lbLeastRequest
		spec.choices = defaultChoiceCount
		allowed = append(allowed, "least_request_lb_config")
		if lr := c.GetLeastRequestLbConfig(); lr != nil {
			v.only(res, "least_request_lb_config", lr, "choice_count")
			if cc := lr.GetChoiceCount(); cc != nil {
				if cc.GetValue() < 2 {
					v.add(res, "least_request_lb_config.choice_count", "must be at least 2, not %d", cc.GetValue())
				}
				spec.choices = int(cc.GetValue())
			}
		}
	case clusterv3.Cluster_RING_HASH:
		spec.lb = lbHash
		allowed = append(allowed, "ring_hash_lb_config")
		if rh := c.GetRingHashLbConfig(); rh != nil {
			v.only(res, "ring_hash_lb_config", rh, "hash_function", "minimum_ring_size", "maximum_ring_size")
			minSize, maxSize := rh.GetMinimumRingSize(), rh.GetMaximumRingSize()
			if maxSize != nil && minSize != nil && minSize.GetValue() > maxSize.GetValue() {
				v.add(res, "ring_hash_lb_config.minimum_ring_size", "%d is above maximum_ring_size %d", minSize.GetValue(), maxSize.GetValue())
			}
			if maxSize != nil && maxSize.GetValue() > maxRingSize {
				v.add(res, "ring_hash_lb_config.maximum_ring_size", "%d is above Envoy's limit %d", maxSize.GetValue(), uint64(maxRingSize))
			}
			if minSize != nil && minSize.GetValue() > maxRingSize {
				v.add(res, "ring_hash_lb_config.minimum_ring_size", "%d is above Envoy's limit %d", minSize.GetValue(), uint64(maxRingSize))
			}
		}
	case clusterv3.Cluster_MAGLEV:
		spec.lb = lbHash
		allowed = append(allowed, "maglev_lb_config")
		if m := c.GetMaglevLbConfig(); m != nil {
			v.only(res, "maglev_lb_config", m, "table_size")
		}
	default:
		v.add(res, "lb_policy", "unsupported load balancing policy %s", c.GetLbPolicy())
	}
	if d := c.GetConnectTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			v.add(res, "connect_timeout", "must be a positive duration, not %v", fmtDuration(d))
		}
		spec.connectTimeout = d.AsDuration()
	}
	var cla *endpointv3.ClusterLoadAssignment
	switch t := c.GetType(); {
	case c.GetClusterType() != nil:
		v.add(res, "cluster_type", "custom cluster types are not supported")
	case t == clusterv3.Cluster_STATIC:
		allowed = append(allowed, "load_assignment")
		cla = c.GetLoadAssignment()
		if cla != nil {
			v.loadAssignment(res, "load_assignment", key, cla)
		}
	case t == clusterv3.Cluster_EDS:
		allowed = append(allowed, "eds_cluster_config")
		ec := c.GetEdsClusterConfig()
		if ec == nil {
			v.add(res, "eds_cluster_config", "required for an EDS cluster")
			break
		}
		v.only(res, "eds_cluster_config", ec, "eds_config", "service_name")
		src := ec.GetEdsConfig()
		if src.GetAds() == nil {
			v.add(res, "eds_cluster_config.eds_config", "only ads is supported")
		} else {
			v.only(res, "eds_cluster_config.eds_config", src, "ads", "resource_api_version", "initial_fetch_timeout")
			v.only(res, "eds_cluster_config.eds_config.ads", src.GetAds())
		}
		name := ec.GetServiceName()
		if name == "" {
			name = key
		}
		cla = eds[name] // checked on its own; missing: no endpoint yet, as Envoy while warming
	default:
		v.add(res, "type", "unsupported cluster type %s", t)
	}
	v.only(res, "", c, allowed...)
	if len(v.errs) > n {
		return nil
	}
	spec.endpoints = endpointAddrs(cla)
	return spec
}

func fmtDuration(d *durationpb.Duration) string {
	if d.CheckValid() != nil {
		return fmt.Sprintf("%ds %dns", d.GetSeconds(), d.GetNanos())
	}
	return d.AsDuration().String()
}

// loadAssignment checks cla, found at path of res, for the cluster key.
func (v *validator) loadAssignment(res, path, key string, cla *endpointv3.ClusterLoadAssignment) {
	if cla == nil {
		v.add(res, path, "nil")
		return
	}
	v.only(res, path, cla, "cluster_name", "endpoints")
	if name := cla.GetClusterName(); name != "" && name != key {
		v.add(res, join(path, "cluster_name"), "%q does not match the cluster %q", name, key)
	}
	for i, loc := range cla.GetEndpoints() {
		lpath := join(path, fmt.Sprintf("endpoints[%d]", i))
		if loc == nil {
			v.add(res, lpath, "nil")
			continue
		}
		v.only(res, lpath, loc, "locality", "lb_endpoints", "load_balancing_weight")
		for j, lbe := range loc.GetLbEndpoints() {
			epath := fmt.Sprintf("%s.lb_endpoints[%d]", lpath, j)
			if lbe == nil {
				v.add(res, epath, "nil")
				continue
			}
			v.only(res, epath, lbe, "endpoint", "health_status", "metadata", "load_balancing_weight")
			if w := lbe.GetLoadBalancingWeight(); w != nil && w.GetValue() != 1 {
				v.add(res, join(epath, "load_balancing_weight"), "endpoint weights are not supported")
			}
			ep := lbe.GetEndpoint()
			if ep == nil {
				v.add(res, join(epath, "endpoint"), "required")
				continue
			}
			v.only(res, join(epath, "endpoint"), ep, "address", "hostname")
			v.socketAddress(res, join(epath, "endpoint.address"), ep.GetAddress(), false)
		}
	}
}

// endpointAddrs lists the endpoints of a validated load assignment that may
// receive traffic: health unknown, healthy or degraded (Envoy excludes
// unhealthy, draining and timed out hosts).
func endpointAddrs(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, loc := range cla.GetEndpoints() {
		for _, lbe := range loc.GetLbEndpoints() {
			switch lbe.GetHealthStatus() {
			case core.HealthStatus_UNHEALTHY, core.HealthStatus_DRAINING, core.HealthStatus_TIMEOUT:
				continue
			}
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			ip, _ := netip.ParseAddr(sa.GetAddress())
			out = append(out, net.JoinHostPort(ip.Unmap().String(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)))
		}
	}
	return out
}
