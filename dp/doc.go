// Package dp is the data plane proxy agent (kuma-dp). It speaks xDS like
// Envoy and imports no server package:
//
//   - dp/xdsclient: the ADS client: one stream to one replica, failover
//     between replicas (discovered through the xDS port), liveness probes,
//     validation, ACK/NACK, snapshots that survive reconnects.
//   - dp/proxy: the built-in L4 proxy that runs the config (TCP proxy
//     listeners, STATIC and EDS clusters, weighted clusters, round robin with
//     ejection, timeouts, draining).
//   - dp/envoy: runs a real Envoy instead, fed through a local ADS relay.
//   - dp/agent: ties them together: the engine gets every complete config,
//     the last good one is persisted in the state dir and served, frozen,
//     while no replica is reachable; the admin endpoint tells the state.
package dp
