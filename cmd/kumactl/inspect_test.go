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
