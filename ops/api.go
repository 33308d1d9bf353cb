package ops

// Public API of the ops package: the signatures cmd/kuma-cp codes against.

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// State is the read-only view of the replicated state that the API reads
// from; *fsm.FSM implements it.
type State interface {
	Get(k resource.Key) (*resource.Resource, bool)
	List(t resource.Type, mesh string) []*resource.Resource
	AppliedIndex() uint64
}

var _ State = (*fsm.FSM)(nil)

// Backend is what the API needs from the cluster layer (cluster.Node implements it).
type Backend interface {
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	ConsistentRead(ctx context.Context) error
	// WaitVisible returns once the state includes every write Apply answered
	// on this replica; every read waits for it.
	WaitVisible(ctx context.Context) error
	Ready() (bool, string)
	Status() cluster.Status
	ClusterID() string
	RemoveReplica(ctx context.Context, name string) error
}

// Config of the API server.
type Config struct {
	Hostname    string // replica name, shown in GET /
	Version     string
	Mode        string // standalone, global, zone
	MaxBodySize int64  // bytes; larger bodies get 400 (default 1 MiB)
	Logger      *slog.Logger
	Registry    *prometheus.Registry // request metrics are registered here; /metrics serves it
}

// DefaultMaxBodySize is the request body limit when Config.MaxBodySize is 0.
const DefaultMaxBodySize = 1 << 20

// NewHandler returns the HTTP handler of the REST API, /ready, /cluster and /metrics.
// Calling it twice with the same Registry is allowed: the request metrics are shared.
func NewHandler(cfg Config, state State, backend Backend) http.Handler {
	return newServer(cfg, state, backend)
}
