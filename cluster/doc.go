// Package cluster turns one kuma-cp process into a replica of a Raft
// cluster: hashicorp/raft with raft-boltdb (log + stable store, DataDir/raft.db)
// and file snapshots (DataDir/snapshots), memberlist gossip for discovery
// and health, raft-autopilot for promoting new replicas, and a small HTTP RPC
// between replicas for forwarding writes and read-index requests.
//
// It owns: bootstrap and joining, forwarding Apply to the leader with
// read-your-writes, consistent reads, the leadership hook (RunWhileLeader),
// cluster status and Raft metrics. It must not: interpret commands (the
// state machine in package fsm does), serve the public API (package ops) or
// read the wall clock into the state other than by stamping Command.Time on
// the leader just before proposing.
//
// # One port
//
// RaftAddr is multiplexed: the first byte of each connection selects Raft
// (0x01) or the replica RPC (0x02, HTTP/1.1). TLS can be layered later by
// wrapping the connection after that byte (or with new byte values).
//
// # Bootstrap
//
// A replica with Raft state never bootstraps. Otherwise it waits until gossip
// shows BootstrapExpect replicas, asks each of them (GET /v1/status) whether it
// has Raft state, and if none has, only the first by name of the first
// BootstrapExpect replicas bootstraps with exactly those as voters. Replicas
// that appear later are added as non-voters by the leader (on gossip join
// events and every few seconds) and promoted by autopilot after
// ServerStabilizationTime. Starting more than BootstrapExpect fresh replicas
// at the same moment can form two clusters (as with Consul): start exactly
// BootstrapExpect, or give the extra ones a Join list and start them later.
//
// # Failover timing
//
// DefaultConfig uses heartbeat 500ms, election 500ms and leader lease 500ms
// (hashicorp/raft defaults are 1s/1s/500ms). A 250ms lease made the leader
// step down on a saturated 2-core host serving 5,000 proxies (its followers'
// answers queued behind thousands of xDS pushes), so the lease stays at
// hashicorp's default. A follower that hears nothing
// for a heartbeat timeout (randomised up to 2x) starts an election, so a dead
// leader is replaced in about 0.5-1.5s and writes fail over within ~2s. The
// price: a leader that cannot reach a quorum for the lease time steps down
// sooner, and a congested network or a long GC pause (> ~500ms) can cause
// needless elections, each costing a short write outage. Raise all three
// together (keeping lease <= heartbeat <= election) for WAN or noisy hosts.
//
// # Writes
//
// Apply on the leader stamps Command.Time, encodes and proposes with
// ApplyTimeout; on a follower it forwards the command (POST /v1/apply) and
// then waits until the entry is applied locally. With no leader for twice
// the election timeout Apply returns ErrNoQuorum. A command is retried on a
// new leader only if it certainly was not proposed; if leadership is lost
// after proposing, the outcome is unknown and ErrNoQuorum is returned.
package cluster
