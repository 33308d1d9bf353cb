package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

const multiDoc = `# a mesh first
type: Mesh
name: demo
---
type: Dataplane
mesh: demo
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 80
    tags:
      kuma.io/service: web
---
type: MeshTrafficPermission
mesh: demo
name: allow-all
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
---
---
type: ZoneIngress
name: zi-1
networking:
  address: 10.0.0.9
  port: 10001
`

func TestApplyMultiDocumentPutsEachResource(t *testing.T) {
	cp := newFakeCP(t, map[string]route{
		"PUT /meshes/demo":                                  {http.StatusCreated, ""},
		"PUT /meshes/demo/dataplanes/web-1":                 {http.StatusOK, ""},
		"PUT /meshes/demo/meshtrafficpermissions/allow-all": {http.StatusCreated, ""},
		"PUT /zoneingresses/zi-1":                           {http.StatusCreated, ""},
	})
	cfg := writeConfig(t, cp.URL)
	file := writeFile(t, "res.yaml", multiDoc)

	r := kumactl(t, "", "--config-file", cfg, "apply", "-f", file)
	wantCode(t, r, 0)
	wantOut := `Resource type="Mesh" mesh="" name="demo" Created
Resource type="Dataplane" mesh="demo" name="web-1" Updated
Resource type="MeshTrafficPermission" mesh="demo" name="allow-all" Created
Resource type="ZoneIngress" mesh="" name="zi-1" Created
`
	if r.stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, wantOut)
	}
	reqs := cp.requests()
	wantPaths := []string{"/meshes/demo", "/meshes/demo/dataplanes/web-1", "/meshes/demo/meshtrafficpermissions/allow-all", "/zoneingresses/zi-1"}
	if len(reqs) != len(wantPaths) {
		t.Fatalf("got %d requests, want %d: %+v", len(reqs), len(wantPaths), reqs)
	}
	for i, req := range reqs {
		if req.Method != http.MethodPut || req.Path != wantPaths[i] {
			t.Errorf("request %d: %s %s, want PUT %s", i, req.Method, req.Path, wantPaths[i])
		}
		if req.ContentType != "application/json" {
			t.Errorf("request %d: content type %q", i, req.ContentType)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(req.Body), &body); err != nil {
			t.Fatalf("request %d: body is not JSON: %v\n%s", i, err, req.Body)
		}
		if body["name"] == nil || body["type"] == nil {
			t.Errorf("request %d: body lacks type or name: %s", i, req.Body)
		}
	}
	var dp map[string]any
	_ = json.Unmarshal([]byte(reqs[1].Body), &dp)
	if got := dp["networking"].(map[string]any)["address"]; got != "10.0.0.1" {
		t.Errorf("dataplane body networking.address = %v", got)
	}
}

func TestApplyJSONFromStdinWithVars(t *testing.T) {
	cp := newFakeCP(t, map[string]route{"PUT *": {http.StatusCreated, ""}})
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, `{"type": "Mesh", "name": "{{ name }}"}`, "--config-file", cfg, "apply", "-f", "-", "-v", "name=from-var")
	wantCode(t, r, 0)
	reqs := cp.requests()
	if len(reqs) != 1 || reqs[0].Path != "/meshes/from-var" {
		t.Fatalf("requests: %+v", reqs)
	}
}

func TestApplyDryRunSendsNothing(t *testing.T) {
	cp := newFakeCP(t, nil)
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, multiDoc, "--config-file", cfg, "apply", "-f", "-", "--dry-run")
	wantCode(t, r, 0)
	if n := len(cp.requests()); n != 0 {
		t.Fatalf("dry run sent %d requests", n)
	}
	for _, want := range []string{"name: demo\ntype: Mesh\n", "\n---\n", "kuma.io/service: web", "type: ZoneIngress"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestApplyRejectsInvalidDocumentsBeforeSending(t *testing.T) {
	cp := newFakeCP(t, map[string]route{"PUT *": {http.StatusCreated, ""}})
	cfg := writeConfig(t, cp.URL)
	input := `type: Mesh
name: ok
---
type: Dataplane
name: no-mesh
networking:
  address: 10.0.0.1
---
type: Foo
name: x
---
type: Mesh
name: [unclosed
---
type: Mesh
mesh: 3
`
	r := kumactl(t, input, "--config-file", cfg, "apply", "-f", "-")
	wantCode(t, r, 1)
	for _, want := range []string{
		"resource[1]: mesh: must not be empty",
		`resource[2]: type: unknown resource type "Foo"`,
		"resource[3]: failed to parse resource:",
		"resource[4]: mesh: must be a string",
		"Error: failed to validate some resources",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if n := len(cp.requests()); n != 0 {
		t.Fatalf("sent %d requests despite invalid input", n)
	}
}

func TestApplyPrintsServerValidationErrors(t *testing.T) {
	cp := newFakeCP(t, map[string]route{"PUT *": {http.StatusBadRequest, `{
		"type": "/std-errors", "status": 400, "title": "Could not process a resource", "detail": "Resource is not valid",
		"invalid_parameters": [{"field": "networking.inbound[0].port", "reason": "port must be in the range [1, 65535]"}]}`}})
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, "type: Mesh\nname: demo\n", "--config-file", cfg, "apply", "-f", "-")
	wantCode(t, r, 1)
	for _, want := range []string{
		`resource[0] Mesh "demo": Could not process a resource (Resource is not valid)`,
		"* networking.inbound[0].port: port must be in the range [1, 65535]",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestApplyInputErrors(t *testing.T) {
	cfg := writeConfig(t, closedAddress(t))
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"missing file flag", "", []string{"apply"}, `required flag(s) "file" not set`},
		{"file does not exist", "", []string{"apply", "-f", "/nonexistent/x.yaml"}, "invalid value for --file"},
		{"empty input", "\n# nothing\n", []string{"apply", "-f", "-"}, "no resource(s) passed to apply"},
		{"bad var", "", []string{"apply", "-f", "-", "-v", "novalue"}, `"-v, --var" flag`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := kumactl(t, tc.stdin, append([]string{"--config-file", cfg}, tc.args...)...)
			wantCode(t, r, 1)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, r.stderr)
			}
		})
	}
}
