package envoy

import (
	"reflect"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
)

// Admin output in the shape Envoy writes it (proto field names, 64-bit
// values as strings, zero values left out, fields this package ignores).
const (
	envoyListenersJSON = `{
 "listener_statuses": [
  {"name": "inbound:127.0.0.1:18080", "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 18080}}},
  {"name": "outbound:127.0.0.1:10001", "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 10001}}},
  {"name": "outbound:127.0.0.1:10009", "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 10009}},
   "additional_local_addresses": []}
 ]
}`
	envoyClustersJSON = `{
 "cluster_statuses": [
  {"name": "kuma-dp-relay", "observability_name": "kuma-dp-relay",
   "host_statuses": [{"address": {"socket_address": {"address": "127.0.0.1", "port_value": 40123}},
     "stats": [{"value": "1", "name": "cx_total"}, {"value": "1", "type": "GAUGE", "name": "cx_active"}],
     "health_status": {"eds_health_status": "HEALTHY"}, "weight": 1, "locality": {}}],
   "circuit_breakers": {"thresholds": [{"max_connections": 1024}]}},
  {"name": "backend", "added_via_api": true, "eds_service_name": "backend",
   "host_statuses": [
    {"address": {"socket_address": {"address": "10.0.0.3", "port_value": 8080}},
     "stats": [{"name": "cx_connect_fail"}, {"value": "4", "name": "cx_total"}, {"type": "GAUGE", "name": "cx_active"}],
     "health_status": {"eds_health_status": "HEALTHY"}, "weight": 1},
    {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 8080}},
     "stats": [{"value": "9", "name": "cx_total"}, {"value": "3", "type": "GAUGE", "name": "cx_active"}],
     "health_status": {"eds_health_status": "HEALTHY"}, "weight": 1}]},
  {"name": "db", "added_via_api": true, "eds_service_name": "db"},
  {"name": "localhost:18081", "added_via_api": true,
   "host_statuses": [{"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18081}},
     "stats": [{"value": "2", "type": "GAUGE", "name": "cx_active"}]}]}
 ]
}`
	envoyStatsJSON = `{"stats": [
  {"value": 1, "name": "listener.admin.downstream_cx_active"},
  {"value": 3, "name": "listener.127.0.0.1_18080.downstream_cx_active"},
  {"value": 11, "name": "listener.127.0.0.1_18080.downstream_cx_total"},
  {"value": 3, "name": "listener.127.0.0.1_18080.worker_0.downstream_cx_active"},
  {"value": 2, "name": "listener.127.0.0.1_10001.downstream_cx_active"},
  {"value": 5, "name": "listener.127.0.0.1_10001.downstream_cx_total"},
  {"value": 2, "name": "listener.127.0.0.1_10001.worker_1.downstream_cx_active"},
  {"value": 1, "name": "listener.127.0.0.1_10009.downstream_cx_active"},
  {"value": 1000, "name": "tcp.localhost_18081.downstream_cx_rx_bytes_total"},
  {"value": 2000, "name": "tcp.localhost_18081.downstream_cx_tx_bytes_total"},
  {"value": 4, "name": "tcp.backend.downstream_cx_no_route"},
  {"value": "1.35.0", "name": "server.version_text"},
  {"histograms": {"supported_quantiles": [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100], "computed_quantiles": []}}
]}`
)

func TestParseStats(t *testing.T) {
	stats, err := parseStats([]byte(envoyStatsJSON))
	if err != nil {
		t.Fatal(err)
	}
	if stats["listener.127.0.0.1_18080.downstream_cx_total"] != 11 || stats["tcp.localhost_18081.downstream_cx_tx_bytes_total"] != 2000 {
		t.Fatalf("stats %v", stats)
	}
	if _, ok := stats["server.version_text"]; ok {
		t.Fatal("a text readout taken as a number")
	}
	// Not the admin listener, not the per-worker copies.
	if n := activeConnections(stats); n != 6 {
		t.Fatalf("active connections %d, want 3+2+1", n)
	}
	if _, err := parseStats([]byte("<html>")); err == nil {
		t.Fatal("no error for a body that is not JSON")
	}
}

func envoyViewFixture(t *testing.T) *envoyView {
	t.Helper()
	v := &envoyView{listeners: &adminv3.Listeners{}, clusters: &adminv3.Clusters{}}
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	if err := opts.Unmarshal([]byte(envoyListenersJSON), v.listeners); err != nil {
		t.Fatal(err)
	}
	if err := opts.Unmarshal([]byte(envoyClustersJSON), v.clusters); err != nil {
		t.Fatal(err)
	}
	var err error
	if v.stats, err = parseStats([]byte(envoyStatsJSON)); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBuildStatus(t *testing.T) {
	cfg := generate(t, webDP, backend1, backend2)
	got := buildStatus(cfg, envoyViewFixture(t))
	want := proxy.Status{
		Listeners: []proxy.ListenerStatus{
			{Name: "inbound:127.0.0.1:18080", Address: "127.0.0.1:18080", Direction: "inbound", Active: 3, Total: 11, BytesIn: 1000, BytesOut: 2000},
			{Name: "outbound:127.0.0.1:10001", Address: "127.0.0.1:10001", Direction: "outbound", Active: 2, Total: 5, NoCluster: 4, Failed: 4},
			{Name: "outbound:127.0.0.1:10002", Address: "127.0.0.1:10002", Direction: "outbound",
				Error: "not active in Envoy (not received yet, or rejected: see the NACK in the log)"},
			{Name: "outbound:127.0.0.1:10009", Address: "127.0.0.1:10009"},
		},
		Clusters: []proxy.ClusterStatus{
			{Name: "backend", ConnectTimeout: "5s", LbPolicy: "ROUND_ROBIN", Endpoints: []proxy.EndpointStatus{
				{Address: "10.0.0.2:8080", Active: 3}, {Address: "10.0.0.3:8080"}}},
			{Name: "db", ConnectTimeout: "5s", LbPolicy: "ROUND_ROBIN", Endpoints: []proxy.EndpointStatus{}},
			{Name: "localhost:18081", ConnectTimeout: "5s", LbPolicy: "ROUND_ROBIN", Endpoints: []proxy.EndpointStatus{
				{Address: "127.0.0.1:18081", Active: 2}}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("status\n got %+v\nwant %+v", got, want)
	}
}

// TestBuildStatusWithoutEnvoy: what the config says, no counters.
func TestBuildStatusWithoutEnvoy(t *testing.T) {
	cfg := generate(t, webDP, backend1, backend2)
	got := buildStatus(cfg, nil)
	want := proxy.Status{
		Listeners: []proxy.ListenerStatus{
			{Name: "inbound:127.0.0.1:18080", Address: "127.0.0.1:18080", Direction: "inbound"},
			{Name: "outbound:127.0.0.1:10001", Address: "127.0.0.1:10001", Direction: "outbound"},
			{Name: "outbound:127.0.0.1:10002", Address: "127.0.0.1:10002", Direction: "outbound"},
		},
		Clusters: []proxy.ClusterStatus{
			{Name: "backend", ConnectTimeout: "5s", LbPolicy: "ROUND_ROBIN", Endpoints: []proxy.EndpointStatus{
				{Address: "10.0.0.2:8080"}, {Address: "10.0.0.3:8080"}}},
			{Name: "db", ConnectTimeout: "5s", LbPolicy: "ROUND_ROBIN", Endpoints: []proxy.EndpointStatus{}},
			{Name: "localhost:18081", ConnectTimeout: "5s", LbPolicy: "ROUND_ROBIN", Endpoints: []proxy.EndpointStatus{
				{Address: "127.0.0.1:18081"}}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("status\n got %+v\nwant %+v", got, want)
	}
	if empty := buildStatus(proxy.Config{}, nil); empty.Listeners == nil || empty.Clusters == nil {
		t.Fatal("nil lists serve as null")
	}
}
