package cluster

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Shapes of the replica-to-replica RPC. They travel only between replicas of
// the same cluster; unknown fields are ignored so a newer peer can add some.

// wireResult is an fsm.Result on the wire.
type wireResult struct {
	Index    uint64          `json:"index"`
	Resource json.RawMessage `json:"resource,omitempty"` // resource.EncodeStored
	Created  bool            `json:"created,omitempty"`
	Err      *wireError      `json:"err,omitempty"`
}

// wireError carries a rejection so that errors.Is / errors.As work on the
// caller's side: the kind names the fsm sentinel or validation errors.
type wireError struct {
	Kind       string                     `json:"kind"`
	Message    string                     `json:"message"`
	Violations []resource.ValidationError `json:"violations,omitempty"`
}

var errorKinds = []struct {
	kind string
	err  error
}{
	{"not_found", fsm.ErrNotFound},
	{"conflict", fsm.ErrConflict},
	{"already_exists", fsm.ErrAlreadyExists},
	{"mesh_not_found", fsm.ErrMeshNotFound},
	{"malformed", fsm.ErrMalformed},
	{"unsupported", fsm.ErrUnsupported},
}

func encodeResult(r *fsm.Result) (*wireResult, error) {
	if r == nil {
		return nil, errors.New("encode result: nil")
	}
	w := &wireResult{Index: r.Index, Created: r.Created}
	if r.Resource != nil {
		b, err := resource.EncodeStored(r.Resource)
		if err != nil {
			return nil, fmt.Errorf("encode result resource: %w", err)
		}
		w.Resource = b
	}
	if r.Err != nil {
		w.Err = encodeError(r.Err)
	}
	return w, nil
}

func encodeError(err error) *wireError {
	we := &wireError{Kind: "other", Message: err.Error()}
	var ve resource.ValidationErrors
	if errors.As(err, &ve) {
		we.Kind = "validation"
		we.Violations = ve
		return we
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			we.Kind = k.kind
			break
		}
	}
	return we
}

func decodeResult(w *wireResult) (*fsm.Result, error) {
	r := &fsm.Result{Index: w.Index, Created: w.Created}
	if len(w.Resource) > 0 {
		res, err := resource.DecodeStored(w.Resource)
		if err != nil {
			return nil, fmt.Errorf("decode result resource: %w", err)
		}
		r.Resource = res
	}
	if w.Err != nil {
		r.Err = decodeError(w.Err)
	}
	return r, nil
}

func decodeError(w *wireError) error {
	var inner error
	switch w.Kind {
	case "validation":
		inner = resource.ValidationErrors(w.Violations)
	default:
		for _, k := range errorKinds {
			if k.kind == w.Kind {
				inner = k.err
			}
		}
	}
	if inner == nil {
		return errors.New(w.Message)
	}
	if inner.Error() == w.Message {
		return inner
	}
	return &remoteError{msg: w.Message, err: inner}
}

// remoteError keeps the leader's message and unwraps to the sentinel.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// rpcError is an RPC failure response.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Leader  string `json:"leader,omitempty"`
}

const (
	codeNotLeader      = "not_leader"
	codeNoQuorum       = "no_quorum"
	codeShuttingDown   = "shutting_down"
	codeProtocol       = "protocol"
	codeBadRequest     = "bad_request"
	codeUnknownReplica = "unknown_replica"
	codeInternal       = "internal"
)

func (e *rpcError) toError() error {
	switch e.Code {
	case codeNotLeader:
		return &NotLeaderError{Leader: e.Leader}
	case codeNoQuorum:
		return wrapMsg(ErrNoQuorum, e.Message)
	case codeShuttingDown:
		// The leader is stopping: like a leader change, retry elsewhere.
		return &NotLeaderError{}
	case codeProtocol:
		return wrapMsg(ErrProtocolVersion, e.Message)
	case codeUnknownReplica:
		return wrapMsg(ErrUnknownReplica, e.Message)
	default:
		return fmt.Errorf("leader: %s", e.Message)
	}
}

func wrapMsg(sentinel error, msg string) error {
	if msg == "" || msg == sentinel.Error() {
		return sentinel
	}
	return &remoteError{msg: msg, err: sentinel}
}

func errorCode(err error) string {
	var nl *NotLeaderError
	switch {
	case errors.As(err, &nl):
		return codeNotLeader
	case errors.Is(err, ErrNoQuorum):
		return codeNoQuorum
	case errors.Is(err, ErrShuttingDown):
		return codeShuttingDown
	case errors.Is(err, ErrProtocolVersion):
		return codeProtocol
	case errors.Is(err, ErrUnknownReplica):
		return codeUnknownReplica
	default:
		return codeInternal
	}
}

// peerStatus is GET /v1/status: one replica's own view, used for bootstrap
// decisions, autopilot health, Status() rows of other replicas and ClusterID.
type peerStatus struct {
	Name          string `json:"name"`
	ClusterID     string `json:"clusterId,omitempty"`
	HasState      bool   `json:"hasState"`
	State         string `json:"state"`
	Leader        string `json:"leader,omitempty"`
	LastIndex     uint64 `json:"lastIndex"`
	LastTerm      uint64 `json:"lastTerm"`
	CommitIndex   uint64 `json:"commitIndex"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	LastContactMs int64  `json:"lastContactMs"` // -1: never heard from a leader
}

type readIndexResponse struct {
	Index uint64 `json:"index"`
}

type applyResponse struct {
	Result *wireResult `json:"result"`
}
