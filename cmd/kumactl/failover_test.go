package main

import (
	"net/http"
	"strings"
	"testing"
)

const meshList = `{"total": 1, "items": [{"type": "Mesh", "name": "default", "creationTime": "2025-03-01T10:00:00Z", "modificationTime": "2025-03-01T10:00:00Z"}], "next": null}`

func TestFailover(t *testing.T) {
	notReady := route{http.StatusServiceUnavailable, `{"type":"/std-errors","status":503,"title":"Replica is not ready","detail":"catching up with the log"}`}
	tests := []struct {
		name      string
		first     func(t *testing.T) (string, *fakeCP)
		wantOnSrv bool // the second replica must have answered
	}{
		{"first replica down (closed port)", func(t *testing.T) (string, *fakeCP) { return closedAddress(t), nil }, true},
		{"first replica not ready (503)", func(t *testing.T) (string, *fakeCP) {
			f := newFakeCP(t, map[string]route{"GET *": notReady})
			return f.URL, f
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first, _ := tc.first(t)
			second := newFakeCP(t, map[string]route{"GET /meshes": {http.StatusOK, meshList}})
			cfg := writeConfig(t, first, second.URL)
			r := kumactl(t, "", "--config-file", cfg, "get", "meshes")
			wantCode(t, r, 0)
			if !strings.Contains(r.stdout, "default") {
				t.Fatalf("stdout:\n%s", r.stdout)
			}
			if n := len(second.requests()); n != 1 {
				t.Fatalf("second replica got %d requests, want 1", n)
			}
		})
	}
}

func TestFailoverDefinitiveAnswersAreNotRetried(t *testing.T) {
	first := newFakeCP(t, map[string]route{"DELETE *": {http.StatusNotFound, `{"status":404,"title":"Not found"}`}})
	second := newFakeCP(t, map[string]route{"DELETE *": {http.StatusOK, ""}})
	cfg := writeConfig(t, first.URL, second.URL)
	r := kumactl(t, "", "--config-file", cfg, "delete", "mesh", "demo")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `there is no Mesh with name "demo"`) {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if n := len(second.requests()); n != 0 {
		t.Fatalf("a 404 was retried on another replica (%d requests)", n)
	}
}

func TestFailoverAllReplicasDown(t *testing.T) {
	a, b := closedAddress(t), closedAddress(t)
	cfg := writeConfig(t, a, b)
	r := kumactl(t, "", "--config-file", cfg, "get", "meshes")
	wantCode(t, r, 1)
	for _, want := range []string{"could not reach the control plane", a, b} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestFailoverNoQuorumReportsTheServersError(t *testing.T) {
	noQuorum := route{http.StatusServiceUnavailable, `{"status":503,"title":"No quorum","detail":"the write could not be committed"}`}
	a := newFakeCP(t, map[string]route{"PUT *": noQuorum})
	b := newFakeCP(t, map[string]route{"PUT *": noQuorum})
	cfg := writeConfig(t, a.URL, b.URL)
	r := kumactl(t, "type: Mesh\nname: demo\n", "--config-file", cfg, "apply", "-f", "-")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "No quorum (the write could not be committed)") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// After a failover the replica that answered is asked first: an apply of
// several documents costs the dead replica one attempt, not one per document.
func TestFailoverSticksToTheReplicaThatAnswered(t *testing.T) {
	down := newFakeCP(t, map[string]route{"PUT *": {http.StatusServiceUnavailable, `{"title":"not ready"}`}})
	up := newFakeCP(t, map[string]route{"PUT *": {http.StatusCreated, ""}})
	cfg := writeConfig(t, down.URL, up.URL)
	r := kumactl(t, "type: Mesh\nname: a\n---\ntype: Mesh\nname: b\n---\ntype: Mesh\nname: c\n", "--config-file", cfg, "apply", "-f", "-")
	wantCode(t, r, 0)
	if n := len(down.requests()); n != 1 {
		t.Errorf("unready replica got %d requests, want 1", n)
	}
	if n := len(up.requests()); n != 3 {
		t.Errorf("ready replica got %d requests, want 3", n)
	}
}
