// Package envoy turns one proxy's part of the replicated state into
// Envoy v3 resources: listeners, clusters and the EndpointRefs of the EDS
// clusters it needs (LoadAssignment builds their ClusterLoadAssignments,
// shared by every proxy of the mesh that needs the same EndpointRef).
//
// It is pure: no I/O, no clock, no randomness, no logging, no goroutines, and
// it never mutates its input. The same Input gives proto-equal output whose
// deterministic marshalling is byte-identical, whatever the replica; every
// list is sorted and no map order leaks. It does not decide when to generate,
// which proxies a change touches, or how resources are versioned: the xDS
// server does.
//
// # What it makes (TCP only, Kuma's names)
//
//   - Per inbound (not state Ignored): listener "inbound:{ip}:{port}" (ip =
//     inbound.address, else networking.address; IPv6 in brackets) with one
//     filter chain holding a tcp_proxy to the local cluster. Inbounds that are
//     NotReady or health.ready=false still get their listener, as in Kuma;
//     LoadAssignment leaves them out of every endpoint list.
//   - Local cluster "localhost:{servicePort}": STATIC, one endpoint at
//     serviceAddress (default 127.0.0.1) and servicePort. When inbounds share a
//     servicePort but not the serviceAddress, each is
//     "localhost:{serviceAddress}:{servicePort}" instead, so they cannot
//     overwrite each other. Inbounds sharing a local cluster give it the
//     connect timeout of the last of them, as in Kuma.
//   - Per outbound: listener "outbound:{ip}:{port}" (ip default 127.0.0.1) with
//     a tcp_proxy to the destination's cluster, or weighted_clusters for a
//     TrafficRoute split.
//   - Destination clusters: type EDS over ADS, named after the kuma.io/service
//     ("backend"), or "{service}-{h}" for a subset that also requires other
//     tags, h being 16 hex digits of SHA-256 over the sorted, length-prefixed
//     tag names and values (Kuma's shape; Kuma's hash input is ambiguous, this
//     one is not). The ClusterLoadAssignment has the cluster's name and is the
//     same for every proxy of the mesh: LoadAssignment builds it from the
//     healthy inbounds carrying the service and tags, at the Dataplane's
//     networking.advertisedAddress, else the inbound's address, else
//     networking.address (Kuma's order), sorted by address and port.
//   - stat_prefix (tcp_proxy) and alt_stat_name (clusters) are Kuma's
//     SanitizeMetric of the cluster name (inbound) or the destination service
//     (outbound): every rune outside [a-zA-Z0-9_-] becomes '_'.
//
// # Policies
//
// TrafficRoute: for each outbound service, the route whose matching source
// selector (against the proxy's inbound and gateway tags) and destination
// selector (against {kuma.io/service: service}) add up to the highest rank
// (more tags first, then more exact tags) wins; on a tie the one created
// later, then the first by name (Kuma's connection-policy matcher). Its split
// (or destination, as a one-entry split) gives the clusters: "*" values and
// missing tags are filled from the outbound's tags, zero weights are
// dropped, repeated clusters are summed. When every weight is zero the
// outbound listener has an empty filter chain, which Envoy closes
// connections on: traffic is not routed, as in Kuma. Without a matching
// route the outbound goes to its service cluster (Kuma's implicit default
// route). loadBalancer sets the cluster's lb_policy (the first route to use a
// cluster in outbound order decides). conf.http is HTTP-only and ignored.
//
// MeshTimeout: as Kuma's plugin does for TCP. Policies whose top-level
// targetRef (Mesh, Dataplane, MeshSubset, MeshService, MeshServiceSubset;
// proxyTypes honoured) selects the proxy are ordered from least to most
// specific (kind, then name descending) and merged field by field. "to"
// entries with targetRef Mesh or MeshService (by name) set the connect_timeout
// of the destination's clusters (by the cluster's service) and the idle_timeout
// of the outbound's tcp_proxy (by the outbound's service). "from" entries
// (kind Mesh) of the policies selecting an inbound set its local cluster's
// connect_timeout and its tcp_proxy's idle_timeout. Unset, malformed or
// out-of-range values fall back to Kuma's defaults: connect 5s, idle 1h.
//
// # Not generated
//
// Gateways get nothing special: a gateway Dataplane has no inbounds and gets
// its outbounds like any other proxy. Transparent proxying gets nothing
// either: every listener binds its address, and there are no passthrough or
// redirect listeners (so the Mesh's outbound passthrough has nothing to act
// on). No mTLS, HTTP filters, access logs or traffic permissions.
// backendRef outbounds (real MeshServices) are skipped.
//
// The Mesh is checked but nothing in it changes TCP config without mTLS or
// transparent proxying.
//
// Parts of a Dataplane that cannot become valid Envoy config (an address that
// is not an IP, a port out of range, a service name that is not UTF-8, a
// duplicate listener) are skipped and named in Proxy.Warnings; the rest of
// the proxy's config is still generated.
package envoy
