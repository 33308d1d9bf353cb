package cluster

// Public API of the cluster package. STUB bodies are replaced by the cluster
// work; signatures are the contract ops and cmd/kuma-cp code against.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kuma-ha/kuma-ha/fsm"
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
}

// DefaultConfig returns LAN-tuned defaults.
func DefaultConfig() Config {
	return Config{
		BootstrapExpect:         1,
		HeartbeatTimeout:        500 * time.Millisecond,
		ElectionTimeout:         500 * time.Millisecond,
		LeaderLeaseTimeout:      250 * time.Millisecond,
		CommitTimeout:           5 * time.Millisecond,
		ApplyTimeout:            5 * time.Second,
		SnapshotThreshold:       8192,
		SnapshotInterval:        30 * time.Second,
		ServerStabilizationTime: 3 * time.Second,
	}
}

// Validate names the first invalid field.
func (c Config) Validate() error { return nil }

// ErrNoQuorum: no leader is reachable or the leader cannot commit; writes get 503.
var ErrNoQuorum = errors.New("no quorum: the cluster has no leader that can commit writes")

// ErrShuttingDown: the replica is stopping.
var ErrShuttingDown = errors.New("replica is shutting down")

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

// Node is one replica: Raft, gossip and the forwarding RPC.
type Node struct{}

// New opens the stores under DataDir and prepares the node; it listens on nothing yet.
func New(cfg Config, state *fsm.FSM) (*Node, error) { return &Node{}, nil }

// Start listens, joins the gossip pool and starts Raft (bootstrapping when
// BootstrapExpect replicas are seen and none has state).
func (n *Node) Start(ctx context.Context) error { return nil }

// Close stops gracefully: a leader transfers leadership first; leaves gossip; closes stores.
func (n *Node) Close() error { return nil }

// Apply proposes a command through the leader (forwarded if this replica is a
// follower) and returns once this replica has applied it (read-your-writes).
// Errors: ErrNoQuorum, ErrShuttingDown, ctx errors. A deterministic rejection is Result.Err, not err.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) { return nil, nil }

// ConsistentRead returns once this replica's state includes every write
// committed before the call (read index through the leader).
func (n *Node) ConsistentRead(ctx context.Context) error { return nil }

// Ready reports whether the replica has joined a cluster and caught up; reason says why not.
func (n *Node) Ready() (bool, string) { return false, "not started" }

// Status is this replica's view of the cluster.
func (n *Node) Status() Status { return Status{} }

// ClusterID is a stable id of the cluster (derived from the first log entries / bootstrap config).
func (n *Node) ClusterID() string { return "" }

// RemoveReplica removes a replica from the Raft configuration (forwarded to the leader).
func (n *Node) RemoveReplica(ctx context.Context, name string) error { return nil }

// IsLeader reports whether this replica currently leads.
func (n *Node) IsLeader() bool { return false }

// RunWhileLeader registers fn to run in its own goroutine each time this
// replica becomes leader; its ctx is cancelled promptly when leadership is lost
// or the node closes. Register before Start.
func (n *Node) RunWhileLeader(name string, fn func(ctx context.Context)) {}

// Collectors are the Prometheus collectors for Raft state, commit and apply latency.
func (n *Node) Collectors() []prometheus.Collector { return nil }
