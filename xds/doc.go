// Package xds serves Envoy configuration (ADS, state of the world and
// incremental) from this replica's copy of the replicated state.
//
//   - cache.go: the config cache (go-control-plane's cache.Cache). Versions
//     are "{index}.{hash}", derived from the state's change indexes, so every
//     replica names the same config the same way; a proxy that already has a
//     newer index than this replica applied is answered only once it caught up.
//     One ClusterLoadAssignment per (mesh, cluster) is shared by all proxies.
//   - server.go, register.go: the gRPC server and its callbacks: node id
//     {mesh}.{name}, self-registration from node metadata dataplane.resource.
//   - insights.go: DataplaneInsight reports, batched through the log.
//   - lifecycle.go: the leader's duties (offline marks for dead replicas,
//     removal of proxy-registered Dataplanes whose proxy is gone).
//   - rebalance.go: shedding streams to even out proxies across replicas.
//
// Package xds/envoy generates the Envoy resources themselves.
package xds
