package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

const (
	meshes = `{"total": 2, "items": [
  {"type": "Mesh", "name": "default", "creationTime": "2025-03-01T09:00:00Z", "modificationTime": "2025-03-01T09:00:00Z"},
  {"type": "Mesh", "name": "secure", "creationTime": "2025-02-01T09:00:00Z", "modificationTime": "2025-02-27T12:00:00Z",
   "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
   "metrics": {"enabledBackend": "prom", "backends": [{"name": "prom", "type": "prometheus"}]},
   "logging": {"backends": [{"name": "file", "type": "file"}, {"name": "tcp", "type": "tcp"}]},
   "routing": {"localityAwareLoadBalancing": true, "zoneEgress": true}}
], "next": null}`
	dataplanes = `{"total": 3, "items": [
  {"type": "Dataplane", "mesh": "default", "name": "web-1", "modificationTime": "2025-03-01T11:59:30Z",
   "networking": {"address": "10.0.0.1", "inbound": [
     {"port": 8080, "tags": {"kuma.io/service": "web", "version": "v1"}},
     {"port": 8081, "tags": {"kuma.io/service": "metrics", "version": "v1"}}]}},
  {"type": "Dataplane", "mesh": "default", "name": "gw", "modificationTime": "2025-03-01T11:00:00Z",
   "networking": {"address": "10.0.0.2", "gateway": {"tags": {"kuma.io/service": "edge"}}}}
], "next": "http://cp:5681/meshes/default/dataplanes?offset=2&size=2"}`
	policy = `{"type": "MeshTimeout", "mesh": "default", "name": "timeout-1", "modificationTime": "2025-03-01T11:58:00Z",
  "spec": {"targetRef": {"kind": "Mesh"}}}`
)

func TestGetTables(t *testing.T) {
	cp := newFakeCP(t, map[string]route{
		"GET /meshes":                                 {http.StatusOK, meshes},
		"GET /meshes/default/dataplanes?size=2":       {http.StatusOK, dataplanes},
		"GET /meshes/other/meshtimeouts":              {http.StatusOK, `{"total":1,"items":[` + strings.Replace(policy, `"default"`, `"other"`, 1) + `],"next":null}`},
		"GET /meshes/default/meshtimeouts/timeout-1":  {http.StatusOK, policy},
		"GET /zones":                                  {http.StatusOK, `{"total":1,"items":[{"type":"Zone","name":"east","enabled":false,"modificationTime":"2025-01-01T12:00:00Z"}],"next":null}`},
		"GET /meshes/default/traffic-routes?offset=5": {http.StatusOK, `{"total":0,"items":[],"next":null}`},
	})
	cfg := writeConfig(t, cp.URL)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "meshes"}, `NAME      mTLS           METRICS           LOGGING              TRACING   LOCALITY   ZONEEGRESS   AGE
default   off            off               off                  off       off        off          3h
secure    builtin/ca-1   prometheus/prom   file/file, tcp/tcp   off       on         on           2d
`},
		{[]string{"get", "dataplanes", "--size", "2"}, `MESH      NAME    TAGS                                     AGE
default   web-1   kuma.io/service=metrics,web version=v1   30s
default   gw      kuma.io/service=edge                     1h

Rerun command with --offset=2 argument to retrieve more resources
`},
		{[]string{"get", "meshtimeouts", "--mesh", "other"}, `MESH    NAME        AGE
other   timeout-1   2m
`},
		{[]string{"get", "meshtimeout", "timeout-1"}, `MESH      NAME        AGE
default   timeout-1   2m
`},
		{[]string{"get", "zones"}, `NAME   ENABLED   AGE
east   false     59d
`},
		{[]string{"get", "traffic-routes", "--offset", "5"}, "MESH   NAME   AGE\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := kumactl(t, "", append([]string{"--config-file", cfg}, tc.args...)...)
			wantCode(t, r, 0)
			if r.stdout != tc.want {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
		})
	}
}

func TestGetJSONAndYAML(t *testing.T) {
	cp := newFakeCP(t, map[string]route{
		"GET /meshes/default/meshtimeouts/timeout-1": {http.StatusOK, policy},
		"GET /meshes": {http.StatusOK, meshes},
	})
	cfg := writeConfig(t, cp.URL)

	r := kumactl(t, "", "--config-file", cfg, "get", "meshtimeout", "timeout-1", "-o", "json")
	wantCode(t, r, 0)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, r.stdout)
	}
	if got["name"] != "timeout-1" || !strings.Contains(r.stdout, "\n  \"mesh\": \"default\"") {
		t.Errorf("-o json:\n%s", r.stdout)
	}

	r = kumactl(t, "", "--config-file", cfg, "get", "meshes", "-o", "yaml")
	wantCode(t, r, 0)
	for _, want := range []string{"items:\n- creationTime:", "  name: default\n", "next: null\n", "total: 2\n", "    enabledBackend: ca-1\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("-o yaml lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestGetNotFound(t *testing.T) {
	cp := newFakeCP(t, nil)
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, "", "--config-file", cfg, "get", "dataplane", "nope", "--mesh", "demo")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "Error: No resources found in demo mesh") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	r = kumactl(t, "", "--config-file", cfg, "get", "zone", "nope")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "Error: No resources found\n") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

func TestDelete(t *testing.T) {
	cp := newFakeCP(t, map[string]route{
		"DELETE /meshes/demo/dataplanes/web-1": {http.StatusOK, ""},
		"DELETE /meshes/demo":                  {http.StatusOK, ""},
		"DELETE /zoneingresses/zi-1":           {http.StatusOK, ""},
		"DELETE /cluster/replicas/cp-3":        {http.StatusOK, ""},
		"DELETE /meshes/default":               {http.StatusBadRequest, `{"status":400,"title":"Bad Request","detail":"mesh has dataplanes"}`},
	})
	cfg := writeConfig(t, cp.URL)
	tests := []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{[]string{"delete", "dataplane", "web-1", "--mesh", "demo"}, 0, "deleted Dataplane \"web-1\"\n", ""},
		{[]string{"delete", "mesh", "demo"}, 0, "deleted Mesh \"demo\"\n", ""},
		{[]string{"delete", "zoneingress", "zi-1"}, 0, "deleted ZoneIngress \"zi-1\"\n", ""},
		{[]string{"delete", "replica", "cp-3"}, 0, "deleted replica \"cp-3\"\n", ""},
		{[]string{"delete", "mesh", "default"}, 1, "", `failed to delete Mesh with the name "default": Bad Request (mesh has dataplanes)`},
		{[]string{"delete", "meshtimeout", "gone"}, 1, "", `there is no MeshTimeout with name "gone"`},
		{[]string{"delete", "widget", "x"}, 1, "", "unknown TYPE: widget. Allowed values:"},
		{[]string{"delete", "mesh"}, 1, "", "accepts 2 arg(s), received 1"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := kumactl(t, "", append([]string{"--config-file", cfg}, tc.args...)...)
			wantCode(t, r, tc.code)
			if r.stdout != tc.out {
				t.Errorf("stdout %q, want %q", r.stdout, tc.out)
			}
			if !strings.Contains(r.stderr, tc.errOut) {
				t.Errorf("stderr lacks %q:\n%s", tc.errOut, r.stderr)
			}
		})
	}
}

func TestBadFlagsNameTheFlag(t *testing.T) {
	cfg := writeConfig(t, closedAddress(t))
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "meshes", "-o", "xml"}, `invalid value "xml" for --output`},
		{[]string{"inspect", "cluster", "-o", "csv"}, `invalid value "csv" for --output`},
		{[]string{"get", "meshes", "--size", "-1"}, "invalid value -1 for --size"},
		{[]string{"get", "meshes", "--size", "ten"}, `invalid argument "ten" for "--size" flag`},
		{[]string{"get", "meshes", "--api-timeout", "0s"}, "invalid value 0s for --api-timeout"},
		{[]string{"get", "meshes", "--log-level", "loud"}, `invalid value "loud" for --log-level`},
		{[]string{"get", "meshes", "--mesh", ""}, "invalid value for --mesh"},
		{[]string{"get", "meshes", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"config", "control-planes", "add", "--name", "x", "--address", "ftp://h:1"}, "invalid value for --address"},
		{[]string{"config", "control-planes", "add", "--name", "x", "--address", ","}, "invalid value for --address: at least one address is required"},
		{[]string{"config", "control-planes", "add", "--address", "http://h:1"}, `required flag(s) "name" not set`},
		{[]string{"config", "control-planes", "add", "--name", " ", "--address", "http://h:1"}, "invalid value for --name"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := kumactl(t, "", append([]string{"--config-file", cfg}, tc.args...)...)
			wantCode(t, r, 1)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, r.stderr)
			}
		})
	}
}
