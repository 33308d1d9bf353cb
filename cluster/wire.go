package cluster

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Shapes of the replica-to-replica RPC. They travel only between replicas of
// the same cluster; unknown fields are ignored so a newer peer can add some.

// wireResult is what a forwarded apply sends back: only what the caller
// needs (the entry's index, whether the put created the resource, a
// deterministic rejection), not the stored resource.
type wireResult struct {
	Index   uint64     `json:"index"`
	Created bool       `json:"created,omitempty"`
	Err     *wireError `json:"err,omitempty"`
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

func decodeResult(w *wireResult) *fsm.Result {
	r := &fsm.Result{Index: w.Index, Created: w.Created}
	if w.Err != nil {
		r.Err = decodeError(w.Err)
	}
	return r
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

// wireCodes is the one table between cluster errors and the RPC's codes:
// toRPCError picks the first row whose error matches (so order matters), and
// toError turns a code back into the error the caller's retry logic reads.
// Codes that say "refused before proposing" come back as errors that are
// safe to retry (NotLeaderError) or final (ErrNoQuorum ...); every other code,
// and any code this binary does not know, is ErrOutcomeUnknown.
var wireCodes = []struct {
	code   string
	status int
	is     func(error) bool
	back   func(e *rpcError) error
}{
	{"not_leader", http.StatusMisdirectedRequest,
		func(err error) bool { var nl *NotLeaderError; return errors.As(err, &nl) },
		func(e *rpcError) error { return &NotLeaderError{Leader: e.Leader} }},
	{"outcome_unknown", http.StatusServiceUnavailable,
		func(err error) bool { return errors.Is(err, ErrOutcomeUnknown) },
		func(e *rpcError) error { return wrapMsg(ErrOutcomeUnknown, e.Message) }},
	// The leader was stopping before it proposed: like a leader change.
	{"shutting_down", http.StatusServiceUnavailable,
		func(err error) bool { return errors.Is(err, ErrShuttingDown) },
		func(*rpcError) error { return &NotLeaderError{} }},
	{"no_quorum", http.StatusServiceUnavailable,
		func(err error) bool { return errors.Is(err, ErrNoQuorum) },
		func(e *rpcError) error { return wrapMsg(ErrNoQuorum, e.Message) }},
	{"protocol", http.StatusConflict,
		func(err error) bool { return errors.Is(err, ErrProtocolVersion) },
		func(e *rpcError) error { return wrapMsg(ErrProtocolVersion, e.Message) }},
	{"unknown_replica", http.StatusNotFound,
		func(err error) bool { return errors.Is(err, ErrUnknownReplica) },
		func(e *rpcError) error { return wrapMsg(ErrUnknownReplica, e.Message) }},
	// A leader that cannot read a follower's command is most likely of an
	// older release than the follower: a rolling upgrade is under way.
	{"bad_request", http.StatusBadRequest,
		func(err error) bool { return errors.Is(err, errBadRequest) },
		func(e *rpcError) error {
			return fmt.Errorf("%w: the leader could not read the command: %s", ErrProtocolVersion, e.Message)
		}},
	// Anything else happened on the leader after it may have proposed.
	{"internal", http.StatusInternalServerError,
		func(error) bool { return true },
		func(e *rpcError) error { return wrapMsg(ErrOutcomeUnknown, e.Message) }},
}

// errBadRequest marks a request the leader could not read; nothing was proposed.
var errBadRequest = errors.New("bad request")

// toRPCError is the wire form of err and its HTTP status.
func toRPCError(err error) (rpcError, int) {
	for _, c := range wireCodes {
		if c.is(err) {
			e := rpcError{Code: c.code, Message: err.Error()}
			var nl *NotLeaderError
			if errors.As(err, &nl) {
				e.Leader = nl.Leader
			}
			return e, c.status
		}
	}
	panic("unreachable: the last row of wireCodes matches every error")
}

func (e *rpcError) toError() error {
	for _, c := range wireCodes {
		if c.code == e.Code {
			return c.back(e)
		}
	}
	// A newer peer's code: assume the worst.
	return wrapMsg(ErrOutcomeUnknown, e.Message)
}

func wrapMsg(sentinel error, msg string) error {
	if msg == "" || msg == sentinel.Error() {
		return sentinel
	}
	return &remoteError{msg: msg, err: sentinel}
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
