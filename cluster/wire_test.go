package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func TestResultRoundTrip(t *testing.T) {
	mesh := meshPut(t, "m1").Put.Resource
	mesh.Version = 7
	tests := []struct {
		name string
		res  *fsm.Result
		is   error
	}{
		{"created", &fsm.Result{Index: 3, Resource: mesh, Created: true}, nil},
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
			got, err := decodeResult(&back)
			if err != nil {
				t.Fatal(err)
			}
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
			if tt.res.Resource != nil && (got.Resource == nil || got.Resource.Name != "m1" || got.Resource.Version != 7) {
				t.Fatalf("resource: %+v", got.Resource)
			}
		})
	}
}

func TestRPCErrorRoundTrip(t *testing.T) {
	for _, err := range []error{ErrNoQuorum, ErrProtocolVersion, ErrUnknownReplica, &NotLeaderError{Leader: "b"}} {
		e := rpcError{Code: errorCode(err), Message: err.Error()}
		var nl *NotLeaderError
		if errors.As(err, &nl) {
			e.Leader = nl.Leader
		}
		back := e.toError()
		if errors.As(err, &nl) {
			var bnl *NotLeaderError
			if !errors.As(back, &bnl) || bnl.Leader != "b" {
				t.Fatalf("not leader lost: %v", back)
			}
			continue
		}
		if !errors.Is(back, err) {
			t.Fatalf("%v -> %v", err, back)
		}
	}
}
