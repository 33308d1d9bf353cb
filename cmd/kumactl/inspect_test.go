package main

import (
	"net/http"
	"strings"
	"testing"
)

const cluster = `{"leader": "cp-1", "replicas": [
  {"name": "cp-1", "apiAddress": "10.0.0.1:5681", "xdsAddress": "10.0.0.1:5678", "raftAddress": "10.0.0.1:5690", "role": "leader", "suffrage": "voter", "lastIndex": 42, "appliedIndex": 42, "healthy": true, "version": "0.1.0"},
  {"name": "cp-2", "apiAddress": "10.0.0.2:5681", "xdsAddress": "10.0.0.2:5678", "raftAddress": "10.0.0.2:5690", "role": "follower", "suffrage": "voter", "lastIndex": 42, "appliedIndex": 40, "healthy": true, "version": "0.1.0"},
  {"name": "cp-3", "role": "follower", "suffrage": "nonvoter", "healthy": false}
]}`

func TestInspectCluster(t *testing.T) {
	cp := newFakeCP(t, map[string]route{"GET /cluster": {http.StatusOK, cluster}})
	cfg := writeConfig(t, cp.URL)

	r := kumactl(t, "", "--config-file", cfg, "inspect", "cluster")
	wantCode(t, r, 0)
	want := `NAME   ROLE       SUFFRAGE   HEALTHY   LAST-INDEX   APPLIED-INDEX   API             XDS             VERSION
cp-1   leader     voter      true      42           42              10.0.0.1:5681   10.0.0.1:5678   0.1.0
cp-2   follower   voter      true      42           40              10.0.0.2:5681   10.0.0.2:5678   0.1.0
cp-3   follower   nonvoter   false     0            0               -               -               -
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = kumactl(t, "", "--config-file", cfg, "inspect", "cluster", "-o", "yaml")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "leader: cp-1\n") || !strings.Contains(r.stdout, "appliedIndex: 40") {
		t.Errorf("-o yaml:\n%s", r.stdout)
	}
}

func TestInspectClusterWithoutLeader(t *testing.T) {
	cp := newFakeCP(t, map[string]route{"GET /cluster": {http.StatusOK, `{"leader": "", "replicas": [{"name": "cp-1", "role": "candidate", "suffrage": "voter"}]}`}})
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, "", "--config-file", cfg, "inspect", "cluster")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "no leader") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

func TestInspectDataplanes(t *testing.T) {
	overviews := `{"total": 2, "items": [
  {"type": "DataplaneOverview", "mesh": "default", "name": "web-1",
   "dataplane": {"networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}},
   "dataplaneInsight": {"subscriptions": [
     {"id": "a", "controlPlaneInstanceId": "cp-1", "connectTime": "2025-03-01T10:00:00Z", "disconnectTime": "2025-03-01T11:00:00Z",
      "status": {"total": {"responsesSent": "3", "responsesRejected": "1"}}},
     {"id": "b", "controlPlaneInstanceId": "cp-2", "connectTime": "2025-03-01T11:00:00Z",
      "status": {"lastUpdateTime": "2025-03-01T11:59:00Z", "total": {"responsesSent": 5, "responsesRejected": 0}},
      "version": {"kumaDp": {"version": "2.9.0"}, "envoy": {"version": "1.31.0"}}}]}},
  {"type": "DataplaneOverview", "mesh": "default", "name": "db-1",
   "dataplane": {"networking": {"address": "10.0.0.2", "inbound": [{"port": 5432, "tags": {"kuma.io/service": "db"}}]}}}
], "next": null}`
	cp := newFakeCP(t, map[string]route{"GET /meshes/default/dataplanes+insights": {http.StatusOK, overviews}})
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, "", "--config-file", cfg, "inspect", "dataplanes")
	wantCode(t, r, 0)
	want := `MESH      NAME    TAGS                  STATUS    LAST-CONNECTED   LAST-UPDATED   TOTAL-UPDATES   TOTAL-ERRORS   REPLICA   KUMA-DP   ENVOY
default   web-1   kuma.io/service=web   Online    1h               1m             8               1              cp-2      2.9.0     1.31.0
default   db-1    kuma.io/service=db    Offline   -                -              0               0              -         -         -
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestInspectMeshes(t *testing.T) {
	insights := `{"total": 2, "items": [
  {"type": "MeshInsight", "name": "default", "dataplanes": {"total": 3, "online": 2, "offline": 1, "partiallyDegraded": 0},
   "policies": {"TrafficRoute": {"total": 2}, "MeshTimeout": {"total": 1}, "TrafficPermission": {"total": 4}}},
  {"type": "MeshInsight", "name": "empty", "dataplanes": {"total": 0, "online": 0, "offline": 0}, "policies": {}}
], "next": "http://cp/mesh-insights?offset=2&size=2"}`
	cp := newFakeCP(t, map[string]route{"GET /mesh-insights": {http.StatusOK, insights}})
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, "", "--config-file", cfg, "inspect", "meshes")
	wantCode(t, r, 0)
	want := `MESH      DATAPLANES   TRAFFIC PERMISSIONS   TRAFFIC ROUTES   CIRCUIT BREAKERS   HEALTH CHECKS   FAULT INJECTIONS   EXTERNAL SERVICES   TRAFFIC TRACES   TRAFFIC LOGS   PROXY TEMPLATES   RATE LIMITS
default   2/3          4                     2                0                  0               0                  0                   0                0              0                 0
empty     0/0          0                     0                0                  0               0                  0                   0                0              0                 0

Rerun command with --offset=2 argument to retrieve more resources
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	for _, o := range []string{"yaml", "json"} {
		r = kumactl(t, "", "--config-file", cfg, "inspect", "meshes", "-o", o)
		wantCode(t, r, 0)
		if !strings.Contains(r.stdout, "MeshInsight") || !strings.Contains(r.stdout, "total") {
			t.Errorf("-o %s:\n%s", o, r.stdout)
		}
	}
}

func TestInspectServices(t *testing.T) {
	insights := `{"total": 3, "items": [
  {"type": "ServiceInsight", "mesh": "demo", "name": "backend", "status": "partially_degraded", "dataplanes": {"total": 2, "online": 1, "offline": 1}},
  {"type": "ServiceInsight", "mesh": "demo", "name": "db", "status": "offline", "dataplanes": {"total": 1, "online": 0, "offline": 1}},
  {"type": "ServiceInsight", "mesh": "demo", "name": "web", "status": "online", "dataplanes": {"total": 2, "online": 2}}
], "next": null}`
	cp := newFakeCP(t, map[string]route{
		"GET /meshes/demo/service-insights":    {http.StatusOK, insights},
		"GET /meshes/default/service-insights": {http.StatusOK, `{"total": 0, "items": [], "next": null}`},
	})
	cfg := writeConfig(t, cp.URL)
	r := kumactl(t, "", "--config-file", cfg, "inspect", "services", "--mesh", "demo")
	wantCode(t, r, 0)
	want := `SERVICE   STATUS               DATAPLANES
backend   Partially degraded   1/2
db        Offline              0/1
web       Online               2/2
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = kumactl(t, "", "--config-file", cfg, "inspect", "services", "-m", "demo", "-o", "yaml")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "status: partially_degraded") {
		t.Errorf("-o yaml:\n%s", r.stdout)
	}
	// Without --mesh: the default mesh.
	r = kumactl(t, "", "--config-file", cfg, "inspect", "services")
	wantCode(t, r, 0)
	if r.stdout != "SERVICE   STATUS   DATAPLANES\n" {
		t.Errorf("default mesh:\n%s", r.stdout)
	}
}

func TestInspectZoneProxies(t *testing.T) {
	overviews := func(typ, insightKey string) string {
		return `{"total": 2, "items": [
  {"type": "` + typ + `", "name": "z-1", "` + insightKey + `": {"subscriptions": [
     {"id": "a", "connectTime": "2025-03-01T09:00:00Z", "disconnectTime": "2025-03-01T10:00:00Z",
      "status": {"total": {"responsesSent": "3", "responsesRejected": "1"}}},
     {"id": "b", "connectTime": "2025-03-01T10:00:00Z",
      "status": {"lastUpdateTime": "2025-03-01T11:58:00Z", "total": {"responsesSent": 27, "responsesRejected": 2}},
      "version": {"kumaDp": {"version": "2.9.0"}, "envoy": {"version": "1.31.0"}}}]}},
  {"type": "` + typ + `", "name": "z-2", "` + insightKey + `": {"subscriptions": []}}
], "next": null}`
	}
	cp := newFakeCP(t, map[string]route{
		"GET /zoneingresses/_overview": {http.StatusOK, overviews("ZoneIngressOverview", "zoneIngressInsight")},
		"GET /zoneegresses/_overview":  {http.StatusOK, overviews("ZoneEgressOverview", "zoneEgressInsight")},
	})
	cfg := writeConfig(t, cp.URL)
	want := `NAME   STATUS    LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS   KUMA-DP VERSION   ENVOY VERSION
z-1    Online    2h                   2m                 30              3              2.9.0             1.31.0
z-2    Offline   never                never              0               0              -                 -
`
	for _, cmd := range []string{"zoneingresses", "zone-ingresses", "zoneegresses"} {
		r := kumactl(t, "", "--config-file", cfg, "inspect", cmd)
		wantCode(t, r, 0)
		if r.stdout != want {
			t.Errorf("inspect %s:\n%s\nwant:\n%s", cmd, r.stdout, want)
		}
	}
	r := kumactl(t, "", "--config-file", cfg, "inspect", "zoneegresses", "-o", "json")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"type": "ZoneEgressOverview"`) {
		t.Errorf("-o json:\n%s", r.stdout)
	}
}

func TestInspectDataplanePolicies(t *testing.T) {
	answer := `{"kind": "SidecarDataplane", "total": 3, "items": [
  {"type": "dataplane", "name": "web-1", "matchedPolicies": {
     "MeshTrafficPermission": [{"type": "MeshTrafficPermission", "mesh": "demo", "name": "allow-all"}],
     "MeshTimeout": [{"type": "MeshTimeout", "mesh": "demo", "name": "timeout-web"}, {"type": "MeshTimeout", "mesh": "demo", "name": "timeout-all"}]}},
  {"type": "inbound", "name": "10.0.0.1:8080:80", "service": "web", "matchedPolicies": {
     "TrafficPermission": [{"name": "allow-web"}]}},
  {"type": "service", "name": "backend", "matchedPolicies": {"HealthCheck": [{"name": "hc"}]}}
]}`
	cp := newFakeCP(t, map[string]route{
		"GET /meshes/demo/dataplanes/web-1/policies":             {http.StatusOK, answer},
		"GET /meshes/demo/dataplanes/web-1/xds?include_eds=true": {http.StatusNotImplemented, `{"type": "/std-errors", "status": 501, "title": "Could not inspect the proxy", "detail": "xds of a proxy is not served by this control plane"}`},
		"GET /meshes/demo/dataplanes/web-1/stats":                {http.StatusOK, "cluster.backend.upstream_cx_total: 3\n"},
		"GET /meshes/default/dataplanes/web-1/policies":          {http.StatusOK, `{"kind": "SidecarDataplane", "total": 0, "items": []}`},
	})
	cfg := writeConfig(t, cp.URL)
	want := `DATAPLANE:
  MeshTimeout
    timeout-web
    timeout-all
  MeshTrafficPermission
    allow-all

INBOUND 10.0.0.1:8080:80(web):
  TrafficPermission
    allow-web

SERVICE backend:
  HealthCheck
    hc

`
	for _, args := range [][]string{
		{"inspect", "dataplane", "web-1", "--mesh", "demo"},
		{"inspect", "dataplane", "web-1", "--mesh", "demo", "--type", "policies"},
	} {
		r := kumactl(t, "", append([]string{"--config-file", cfg}, args...)...)
		wantCode(t, r, 0)
		if r.stdout != want {
			t.Errorf("%v:\n%s\nwant:\n%s", args, r.stdout, want)
		}
	}
	r := kumactl(t, "", "--config-file", cfg, "inspect", "dataplane", "web-1", "--mesh", "demo", "-o", "yaml")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "kind: SidecarDataplane") || !strings.Contains(r.stdout, "name: timeout-web") {
		t.Errorf("-o yaml:\n%s", r.stdout)
	}
	// No policy selects it: nothing to print.
	r = kumactl(t, "", "--config-file", cfg, "inspect", "dataplane", "web-1")
	wantCode(t, r, 0)
	if r.stdout != "" {
		t.Errorf("no policies:\n%q", r.stdout)
	}

	// The proxy's admin views come as the control plane sends them, or its error.
	r = kumactl(t, "", "--config-file", cfg, "inspect", "dataplane", "web-1", "--mesh", "demo", "--type", "stats")
	wantCode(t, r, 0)
	if r.stdout != "cluster.backend.upstream_cx_total: 3\n" {
		t.Errorf("stats:\n%q", r.stdout)
	}
	r = kumactl(t, "", "--config-file", cfg, "inspect", "dataplane", "web-1", "--mesh", "demo", "--type", "config-dump", "--include-eds")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "not served by this control plane") {
		t.Errorf("config-dump stderr:\n%s", r.stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--type", "routes"}, `invalid value "routes" for --type: must be one of policies|clusters|config|config-dump|stats`},
		{[]string{"--include-eds"}, "flag '--include-eds' can be used only when '--type=config-dump'"},
	} {
		r := kumactl(t, "", append([]string{"--config-file", cfg, "inspect", "dataplane", "web-1"}, tc.args...)...)
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr\n%s\nwant %q", tc.args, r.stderr, tc.want)
		}
	}
	r = kumactl(t, "", "--config-file", cfg, "inspect", "dataplane")
	wantCode(t, r, 1)
}
