package envoy

import (
	"cmp"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

type hostPortKey struct {
	addr string
	port uint32
}

// LoadAssignment builds the ClusterLoadAssignment for ref from the
// Dataplanes of the mesh carrying ref.Service (given sorted by name; any other
// resource is skipped): every healthy inbound whose tags match
// (kuma.io/service == ref.Service and every ref.Tags entry, "*" matching any
// value) is one endpoint at the inbound's port and at the Dataplane's
// networking.advertisedAddress, else the inbound's address, else
// networking.address (Kuma's DataplaneAdvertisedIP).
//
// Healthy is Kuma's: state Ready (or unset) and not health.ready=false;
// Ignored and NotReady inbounds are left out. Endpoints whose address is not
// an IP (EDS cannot carry host names) or whose port is out of range are left
// out too. Endpoints are sorted by address then port, each listed once, so the
// result depends only on the set of Dataplanes. The result is shared by every
// proxy that needs ref: treat it as immutable.
func LoadAssignment(ref EndpointRef, dataplanes []*resource.Resource) *endpointv3.ClusterLoadAssignment {
	var hosts []hostPortKey
	for _, r := range dataplanes {
		if r == nil {
			continue
		}
		dp, ok := r.Spec.(*resource.DataplaneSpec)
		if !ok || dp == nil {
			continue
		}
		n := &dp.Networking
		for i := range n.Inbound {
			in := &n.Inbound[i]
			if !healthy(in) || in.Tags[resource.ServiceTag] != ref.Service || !selectorMatches(ref.Tags, in.Tags) {
				continue
			}
			addr := n.AdvertisedAddress
			if addr == "" {
				addr = cmp.Or(in.Address, n.Address)
			}
			if !isIP(addr) || !validPort(in.Port) {
				continue
			}
			hosts = append(hosts, hostPortKey{addr: addr, port: in.Port})
		}
	}
	slices.SortFunc(hosts, func(a, b hostPortKey) int {
		if c := cmp.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		return cmp.Compare(a.port, b.port)
	})
	hosts = slices.Compact(hosts)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: ref.Cluster}
	if len(hosts) == 0 {
		return cla
	}
	// One allocation per message type rather than per endpoint: a service can
	// have thousands of endpoints and every change rebuilds its assignment.
	n := len(hosts)
	var (
		lbEndpoints = make([]*endpointv3.LbEndpoint, n)
		lbs         = make([]endpointv3.LbEndpoint, n)
		hostIDs     = make([]endpointv3.LbEndpoint_Endpoint, n)
		endpoints   = make([]endpointv3.Endpoint, n)
		addrs       = make([]core.Address, n)
		sockWraps   = make([]core.Address_SocketAddress, n)
		socks       = make([]core.SocketAddress, n)
		ports       = make([]core.SocketAddress_PortValue, n)
	)
	for i, h := range hosts {
		ports[i].PortValue = h.port
		socks[i].Protocol = core.SocketAddress_TCP
		socks[i].Address = h.addr
		socks[i].PortSpecifier = &ports[i]
		sockWraps[i].SocketAddress = &socks[i]
		addrs[i].Address = &sockWraps[i]
		endpoints[i].Address = &addrs[i]
		hostIDs[i].Endpoint = &endpoints[i]
		lbs[i].HostIdentifier = &hostIDs[i]
		lbEndpoints[i] = &lbs[i]
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbEndpoints}}
	return cla
}

// healthy is Kuma's GetHealthyInbounds test.
func healthy(in *resource.Inbound) bool {
	if in.State != "" && in.State != resource.InboundReady {
		return false
	}
	return in.Health == nil || in.Health.Ready
}
