package fsm

// Public API of the state machine. STUB bodies are replaced by the fsm work;
// signatures are the contract the cluster and ops packages code against.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// CommandType identifies a log command. Values are never reused.
type CommandType uint16

const (
	CmdPut               CommandType = 1 // create or replace one resource
	CmdDelete            CommandType = 2 // delete one resource (a Mesh cascades to its resources)
	CmdEnsureDefaultMesh CommandType = 3 // create the default Mesh once per cluster
)

// ProtocolVersion is the highest command protocol this binary understands.
// Replicas advertise it through gossip; the leader proposes a command only
// when every replica's advertised version >= command's MinProtocol.
const ProtocolVersion = 1

// MinProtocol is the protocol version that introduced a command type.
func (t CommandType) MinProtocol() int { return 1 }

// Command is one log entry's content. Time is stamped by the proposer (the
// leader, just before raft.Apply) and is the only clock the FSM sees.
type Command struct {
	Type   CommandType
	Time   time.Time
	Put    *PutCommand
	Delete *DeleteCommand
}

// PutCommand creates or replaces a resource.
// IfVersion: nil = unconditional; pointer to 0 = must not exist; N = current version must be N.
type PutCommand struct {
	Resource  *resource.Resource
	IfVersion *uint64
}

// DeleteCommand removes a resource. IfVersion 0 = unconditional.
type DeleteCommand struct {
	Key       resource.Key
	IfVersion uint64
}

// Encode serialises a command with the current envelope version.
func Encode(c Command) ([]byte, error) { return nil, errors.New("not implemented") }

// Sentinel rejections: deterministic, returned as Result.Err on every replica.
var (
	ErrNotFound      = errors.New("resource not found")
	ErrConflict      = errors.New("version does not match") // failed IfVersion -> HTTP 412
	ErrAlreadyExists = errors.New("resource already exists")
	ErrMeshNotFound  = errors.New("mesh not found")
	ErrMalformed     = errors.New("malformed log entry")
)

// Result is what Apply returns for one entry (hashicorp/raft hands it back
// through ApplyFuture.Response()).
type Result struct {
	Index    uint64
	Resource *resource.Resource // the stored resource after a put; nil for delete
	Created  bool
	Err      error // nil, a sentinel above (wrapped), or resource.ValidationErrors
}

// Options configure an FSM.
type Options struct {
	Logger *slog.Logger
	// OnFatal is called when an entry cannot be applied without risking
	// divergence (unknown command type or envelope version from a newer
	// binary). The default logs and exits the process with status 1.
	OnFatal func(error)
}

// FSM is the replicated state: an indexed in-memory store of resources.
type FSM struct{}

func New(opts Options) *FSM { return &FSM{} }

// Apply applies one log entry. It never panics and never blocks on watchers.
func (f *FSM) Apply(index uint64, data []byte) *Result { return nil }

// Snapshot takes an unchanging view cheaply; the I/O happens in WriteTo.
func (f *FSM) Snapshot() *Snapshot { return nil }

// Snapshot is a point-in-time view of the state.
type Snapshot struct{}

func (s *Snapshot) WriteTo(w io.Writer) (int64, error) { return 0, nil }
func (s *Snapshot) Release()                           {}

// Restore replaces the state with a snapshot streamed from r, then wakes every watcher.
func (f *FSM) Restore(r io.Reader) error { return nil }

// Get returns one resource.
func (f *FSM) Get(k resource.Key) (*resource.Resource, bool) { return nil, false }

// List returns resources of a type sorted by (mesh, name); mesh "" means all meshes.
func (f *FSM) List(t resource.Type, mesh string) []*resource.Resource { return nil }

// DataplanesByService returns the Dataplanes of a mesh with an inbound tagged kuma.io/service=service.
func (f *FSM) DataplanesByService(mesh, service string) []*resource.Resource { return nil }

// AppliedIndex is the index of the last entry applied (or restored).
func (f *FSM) AppliedIndex() uint64 { return 0 }

// WaitApplied blocks until AppliedIndex() >= index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error { return nil }

// Digest is a hash of the full state (resources with versions and times), equal on converged replicas.
func (f *FSM) Digest() string { return "" }

// Count returns the number of stored resources.
func (f *FSM) Count() int { return 0 }

// Change is one resource changed at Index.
type Change struct {
	Key     resource.Key
	Deleted bool
	Index   uint64
}

// Batch is what a watcher receives: every change since its last Next, coalesced
// per key. Reset means "too much to list, or a restore happened: resync everything".
type Batch struct {
	Changes []Change
	Reset   bool
	Index   uint64 // applied index when the batch was taken
}

// Subscription delivers coalesced change batches. C is signalled (never blocks Apply).
type Subscription struct{ C <-chan struct{} }

func (f *FSM) Subscribe() *Subscription { return &Subscription{} }
func (s *Subscription) Next() Batch     { return Batch{} }
func (s *Subscription) Close()          {}
