package fsm

// Public API of the state machine: the types the cluster and ops packages
// code against. The implementation lives in fsm.go, command.go, snapshot.go
// and watch.go.

import (
	"errors"
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
	CmdInsights          CommandType = 4 // a batch of proxy connection reports (protocol 2)
	CmdDeregister        CommandType = 5 // remove a proxy-registered Dataplane whose proxy is gone (protocol 2)
)

// ProtocolVersion is the highest command protocol this binary understands.
// Replicas advertise it through gossip; the leader proposes a command only
// when every replica's advertised version >= command's MinProtocol.
//
// 1: put, delete, ensure-default-mesh. 2: insights, deregister.
const ProtocolVersion = 2

// Command is one log entry's content. Time is stamped by the proposer (the
// leader, just before raft.Apply) and is the only clock the FSM sees.
type Command struct {
	Type       CommandType
	Time       time.Time
	Put        *PutCommand
	Delete     *DeleteCommand
	Insights   *InsightsCommand
	Deregister *DeregisterCommand
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
