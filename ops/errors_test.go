package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func TestToError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		field      string
		unexpected bool
	}{
		{"not found", fsm.ErrNotFound, 404, "", false},
		{"wrapped conflict", fmt.Errorf("put: %w", fsm.ErrConflict), 412, "", false},
		{"already exists", fsm.ErrAlreadyExists, 412, "", false},
		{"mesh not found", fmt.Errorf("x: %w", fsm.ErrMeshNotFound), 400, "mesh", false},
		{"validation", resource.ValidationErrors{{Field: "networking.inbound[0].port", Reason: "must be in range [1, 65535]"}}, 400, "networking.inbound[0].port", false},
		{"decode", &resource.DecodeError{Field: "type", Reason: "unknown type"}, 400, "type", false},
		{"decode syntax", &resource.DecodeError{Reason: "unexpected EOF"}, 400, "body", false},
		{"no quorum", fmt.Errorf("apply: %w", cluster.ErrNoQuorum), 503, "", false},
		{"outcome unknown", fmt.Errorf("apply: %w", cluster.ErrOutcomeUnknown), 503, "", false},
		{"protocol", cluster.ErrProtocolVersion, 503, "", false},
		{"unknown replica", cluster.ErrUnknownReplica, 404, "", false},
		{"shutting down", cluster.ErrShuttingDown, 503, "", false},
		{"not leader", &cluster.NotLeaderError{Leader: "b"}, 503, "", false},
		{"deadline", context.DeadlineExceeded, 503, "", false},
		{"canceled", context.Canceled, 499, "", false},
		{"api error", badRequest("t", "size", "bad"), 400, "size", false},
		{"unknown", errors.New("boom"), 500, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, unexpected := toError(tc.err, "title")
			e.finish()
			if e.Status != tc.status {
				t.Fatalf("status = %d, want %d (%+v)", e.Status, tc.status, e)
			}
			if unexpected != tc.unexpected {
				t.Fatalf("unexpected = %v, want %v", unexpected, tc.unexpected)
			}
			if e.Type != "/std-errors" || e.Details != e.Detail || e.Title == "" {
				t.Fatalf("not Kuma-shaped: %+v", e)
			}
			if tc.field != "" {
				if len(e.InvalidParameters) == 0 || e.InvalidParameters[0].Field != tc.field {
					t.Fatalf("invalid_parameters = %+v, want field %q", e.InvalidParameters, tc.field)
				}
				if len(e.Causes) != len(e.InvalidParameters) || e.Causes[0].Field != tc.field {
					t.Fatalf("causes = %+v, want field %q", e.Causes, tc.field)
				}
			}
		})
	}
	e, _ := toError(cluster.ErrNoQuorum, "x")
	if e.Title != TitleNoQuorum {
		t.Fatalf("no quorum title = %q", e.Title)
	}
}

// TestMayHaveApplied: a 503 to a write says whether the write may still
// apply; reads and other statuses do not carry the field.
func TestMayHaveApplied(t *testing.T) {
	s := &server{log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name   string
		method string
		err    error
		want   string // the field's JSON, "" for absent
	}{
		{"outcome unknown", http.MethodPut, fmt.Errorf("apply: %w: %w", cluster.ErrOutcomeUnknown, errors.New("raft is shutting down")), "true"},
		{"no quorum", http.MethodPut, cluster.ErrNoQuorum, "false"},
		{"shutting down", http.MethodDelete, cluster.ErrShuttingDown, "false"},
		{"protocol", http.MethodPut, cluster.ErrProtocolVersion, "false"},
		{"deadline", http.MethodPut, context.DeadlineExceeded, "true"},
		{"no quorum wrapping a deadline", http.MethodPut, fmt.Errorf("%w: %w", cluster.ErrNoQuorum, context.DeadlineExceeded), "false"},
		{"read", http.MethodGet, cluster.ErrNoQuorum, ""},
		{"conflict", http.MethodPut, fsm.ErrConflict, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.writeError(rec, httptest.NewRequest(tc.method, "/meshes/default", nil), titlePut, tc.err)
			var body map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if got := string(body["mayHaveApplied"]); got != tc.want {
				t.Fatalf("mayHaveApplied = %q, want %q (status %d, body %s)", got, tc.want, rec.Code, rec.Body.String())
			}
		})
	}
}

func TestParseIfMatch(t *testing.T) {
	tests := []struct {
		in      string
		want    ifMatch
		wantErr bool
	}{
		{"", ifMatch{}, false},
		{`"5"`, ifMatch{version: 5}, false},
		{`5`, ifMatch{version: 5}, false},
		{`W/"7"`, ifMatch{version: 7}, false},
		{` "9" `, ifMatch{version: 9}, false},
		{`*`, ifMatch{any: true}, false},
		{`"0"`, ifMatch{never: true}, false},
		{`"abc"`, ifMatch{}, true},
		{`"1", "2"`, ifMatch{}, true},
		{`-3`, ifMatch{}, true},
		{`"`, ifMatch{}, true},
	}
	for _, tc := range tests {
		got, err := parseIfMatch(tc.in)
		if (err != nil) != tc.wantErr {
			t.Fatalf("parseIfMatch(%q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.InvalidParameters[0].Field != "If-Match" {
				t.Fatalf("parseIfMatch(%q) err = %#v, want 400 naming If-Match", tc.in, err)
			}
			continue
		}
		if got != tc.want {
			t.Fatalf("parseIfMatch(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRoutesRegisterWithoutConflict(t *testing.T) {
	// ServeMux panics on conflicting patterns; building the handler twice on one
	// registry must also work (metrics are shared).
	reg := newTestRegistry()
	NewHandler(Config{Registry: reg}, fsm.New(fsm.Options{}), &fakeBackend{})
	NewHandler(Config{Registry: reg}, fsm.New(fsm.Options{}), &fakeBackend{})
}

func TestDisplayNames(t *testing.T) {
	for in, want := range map[string]string{
		"MeshTrafficPermission": "Mesh Traffic Permissions",
		"Mesh":                  "Meshes",
		"ZoneIngress":           "Zone Ingresses",
		"Dataplane":             "Dataplanes",
	} {
		if got := pluralize(displayName(in)); got != want {
			t.Errorf("%s -> %q, want %q", in, got, want)
		}
	}
}
