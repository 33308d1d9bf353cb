package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func TestResultRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		res  *fsm.Result
		is   error
	}{
		{"created", &fsm.Result{Index: 3, Created: true}, nil},
		{"not found", &fsm.Result{Index: 4, Err: fmt.Errorf("delete x: %w", fsm.ErrNotFound)}, fsm.ErrNotFound},
		{"conflict", &fsm.Result{Index: 5, Err: fsm.ErrConflict}, fsm.ErrConflict},
		{"exists", &fsm.Result{Index: 5, Err: fmt.Errorf("put: %w", fsm.ErrAlreadyExists)}, fsm.ErrAlreadyExists},
		{"mesh", &fsm.Result{Index: 5, Err: fsm.ErrMeshNotFound}, fsm.ErrMeshNotFound},
		{"validation", &fsm.Result{Index: 6, Err: resource.ValidationErrors{{Field: "name", Reason: "bad"}}}, nil},
		{"other", &fsm.Result{Index: 7, Err: errors.New("boom")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := encodeResult(tt.res)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			var back wireResult
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			got := decodeResult(&back)
			if got.Index != tt.res.Index || got.Created != tt.res.Created {
				t.Fatalf("got %+v", got)
			}
			if (got.Err == nil) != (tt.res.Err == nil) || got.Err != nil && got.Err.Error() != tt.res.Err.Error() {
				t.Fatalf("err %v, want %v", got.Err, tt.res.Err)
			}
			if tt.is != nil && !errors.Is(got.Err, tt.is) {
				t.Fatalf("errors.Is(%v, %v) false", got.Err, tt.is)
			}
			var ve resource.ValidationErrors
			if tt.name == "validation" && (!errors.As(got.Err, &ve) || ve[0].Field != "name") {
				t.Fatalf("validation errors lost: %v", got.Err)
			}
		})
	}
}

// TestRPCErrorRoundTrip walks every row of wireCodes: what the leader's
// error becomes on the follower, whether the follower may retry it and
// whether the write may still apply.
func TestRPCErrorRoundTrip(t *testing.T) {
	tests := []struct {
		err            error
		code           string
		status         int
		retry          bool // notProposed on the follower's side
		mayHaveApplied bool
		is             error
	}{
		{&NotLeaderError{Leader: "b"}, "not_leader", 421, true, false, nil},
		{fmt.Errorf("propose: %w: %w", ErrOutcomeUnknown, raft.ErrRaftShutdown), "outcome_unknown", 503, false, true, ErrOutcomeUnknown},
		{fmt.Errorf("%w: %w", ErrOutcomeUnknown, raft.ErrLeadershipLost), "outcome_unknown", 503, false, true, ErrOutcomeUnknown},
		{ErrShuttingDown, "shutting_down", 503, true, false, nil},
		{fmt.Errorf("%w: %w", ErrNoQuorum, raft.ErrEnqueueTimeout), "no_quorum", 503, false, false, ErrNoQuorum},
		{ErrProtocolVersion, "protocol", 409, false, false, ErrProtocolVersion},
		{ErrUnknownReplica, "unknown_replica", 404, false, false, ErrUnknownReplica},
		{fmt.Errorf("%w: bad envelope", errBadRequest), "bad_request", 400, false, false, ErrProtocolVersion},
		{errors.New("disk on fire"), "internal", 500, false, true, ErrOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e, status := toRPCError(tt.err)
			if e.Code != tt.code || status != tt.status {
				t.Fatalf("toRPCError(%v) = %s %d, want %s %d", tt.err, e.Code, status, tt.code, tt.status)
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			var wire rpcError
			if err := json.Unmarshal(b, &wire); err != nil {
				t.Fatal(err)
			}
			back := wire.toError()
			if got := notProposed(back); got != tt.retry {
				t.Errorf("notProposed(%v) = %v, want %v", back, got, tt.retry)
			}
			if got := MayHaveApplied(back); got != tt.mayHaveApplied {
				t.Errorf("MayHaveApplied(%v) = %v, want %v", back, got, tt.mayHaveApplied)
			}
			if tt.is != nil && !errors.Is(back, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", back, tt.is)
			}
			var nl *NotLeaderError
			if tt.code == "not_leader" && (!errors.As(back, &nl) || nl.Leader != "b") {
				t.Errorf("leader hint lost: %v", back)
			}
		})
	}
	t.Run("unknown code", func(t *testing.T) {
		back := (&rpcError{Code: "from_a_newer_peer", Message: "?"}).toError()
		if !errors.Is(back, ErrOutcomeUnknown) || notProposed(back) {
			t.Fatalf("an unknown code must be outcome unknown, never retried: %v", back)
		}
	})
}
