package cluster

// Public API of the cluster package: configuration, errors and status types.
// The Node (node.go) is the contract ops and cmd/kuma-cp code against.

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config is filled from flags, environment and file by cmd/kuma-cp.
type Config struct {
	Name            string // unique replica name (raft ServerID)
	DataDir         string
	RaftAddr        string // listen address for Raft + forwarding (multiplexed)
	GossipAddr      string // memberlist TCP+UDP
	AdvertiseHost   string // host others use to reach us; ports come from the *Addr fields
	APIAddr         string // advertised in gossip for /cluster
	XDSAddr         string // advertised in gossip for /cluster and proxies
	Join            []string
	BootstrapExpect int
	Version         string // binary version, advertised in gossip

	// Raft timing, tuned for a LAN; see DefaultConfig.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	ApplyTimeout       time.Duration // how long a write may wait for commit before 503
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	// ServerStabilizationTime: how long a new replica must be healthy before autopilot makes it a voter.
	ServerStabilizationTime time.Duration
	// DeadServerCleanup lets autopilot remove replicas that memberlist declared dead (off by default; removal via API).
	DeadServerCleanup bool

	Logger *slog.Logger

	env *env // nil: TCP and disk (tcpEnv); the in-memory test harness sets its own
}

// DefaultConfig returns LAN-tuned defaults.
func DefaultConfig() Config {
	return Config{
		BootstrapExpect:         1,
		HeartbeatTimeout:        500 * time.Millisecond,
		ElectionTimeout:         500 * time.Millisecond,
		LeaderLeaseTimeout:      500 * time.Millisecond,
		CommitTimeout:           5 * time.Millisecond,
		ApplyTimeout:            5 * time.Second,
		SnapshotThreshold:       8192,
		SnapshotInterval:        30 * time.Second,
		ServerStabilizationTime: 3 * time.Second,
	}
}

// Errors of Apply fall in two classes, and callers must keep them apart:
//
//   - refused before proposing: ErrNoQuorum, ErrShuttingDown,
//     ErrProtocolVersion, a deterministic rejection (Result.Err). The command
//     was not, and never will be, applied.
//   - outcome unknown: ErrOutcomeUnknown and the caller's own context
//     expiring. The command was proposed (or may have been) and may still be
//     committed and applied; it must not be retried blindly.
//
// MayHaveApplied tells the two apart.

// ErrNoQuorum: no leader is reachable or the leader cannot commit; the
// command was not proposed; writes get 503.
var ErrNoQuorum = errors.New("no quorum: the cluster has no leader that can commit writes")

// ErrOutcomeUnknown: the command was proposed but the leader lost its
// leadership, stopped or became unreachable before the commit was known; it
// may or may not be applied. Never retried by this package.
var ErrOutcomeUnknown = errors.New("outcome unknown: the write was proposed and may or may not be applied")

// MayHaveApplied reports whether a command whose Apply returned err may still
// be (or have been) applied: true for ErrOutcomeUnknown, context expiry and
// any error this package does not classify as refused before proposing.
func MayHaveApplied(err error) bool {
	var nl *NotLeaderError
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrOutcomeUnknown):
		return true
	case errors.Is(err, ErrNoQuorum), errors.Is(err, ErrShuttingDown),
		errors.Is(err, ErrProtocolVersion), errors.Is(err, ErrUnknownReplica),
		errors.As(err, &nl):
		return false
	default:
		return true
	}
}

// ErrShuttingDown: the replica is stopping.
var ErrShuttingDown = errors.New("replica is shutting down")

// ErrProtocolVersion: some replica advertises a protocol version older than
// the command needs (a rolling upgrade is not finished); the command is not proposed.
var ErrProtocolVersion = errors.New("command not supported by every replica yet")

// ErrUnknownReplica: RemoveReplica named a replica that is not in the Raft configuration.
var ErrUnknownReplica = errors.New("replica is not in the cluster configuration")

// NotLeaderError says who the leader is (if known); used inside forwarding.
type NotLeaderError struct{ Leader string }

func (e *NotLeaderError) Error() string { return fmt.Sprintf("not the leader (leader: %q)", e.Leader) }

// ReplicaStatus is one row of GET /cluster.
type ReplicaStatus struct {
	Name         string `json:"name"`
	APIAddress   string `json:"apiAddress"`
	XDSAddress   string `json:"xdsAddress"`
	RaftAddress  string `json:"raftAddress"`
	Role         string `json:"role"`     // leader, follower, candidate (or "unknown" for a replica not in the raft config)
	Suffrage     string `json:"suffrage"` // voter, nonvoter
	LastIndex    uint64 `json:"lastIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
	Healthy      bool   `json:"healthy"`
	Version      string `json:"version"`
}

// Status is GET /cluster.
type Status struct {
	Leader   string          `json:"leader"`
	Replicas []ReplicaStatus `json:"replicas"`
}
