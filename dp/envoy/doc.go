// Package envoy runs a real Envoy as kuma-dp's engine (the agent's Engine),
// instead of the built-in proxy.
//
// Envoy does not talk to the control plane replicas. It talks over ADS to a
// Relay inside kuma-dp (127.0.0.1, an ephemeral port), which serves exactly
// the config the agent hands the engine: the agent keeps the one xDS stream
// to the replicas, fails over between them and persists the last good
// config, so Envoy gets the same failover, the same frozen config across
// restarts, and the control plane sees one proxy, not two.
//
// It owns: the relay (a go-control-plane SnapshotCache in ADS mode, one
// node), the bootstrap file, the Envoy process and its supervision (restart
// with jittered backoff when it exits unexpectedly), the forwarding of
// Envoy's output to the kuma-dp log, and the translation of Envoy's admin
// API into proxy.Status. Every goroutine it starts ends in Shutdown.
//
// What it must not do: validate config itself (Envoy NACKs what it cannot
// run; the relay logs the NACK, the agent is not told), let Envoy reach the
// control plane, or import any package of the control plane (fsm, cluster,
// xds, ops): it speaks xDS, like Envoy. Tests may use xds/envoy to generate
// configs.
package envoy
