package envoy

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/kuma-ha/kuma-ha/dp/xdsclient"
)

// fakeEnvoyFlag, among a process's arguments, makes the test binary a fake
// Envoy: Engine tests pass it in ExtraArgs with Binary = the test binary.
const fakeEnvoyFlag = "--kuma-fake-envoy"

// fakeEnvoy stands in for Envoy: it takes Envoy's command line, reads and
// checks the bootstrap as Envoy would, gets its config from the relay over
// ADS (with dp/xdsclient, an Envoy-like client), and serves the few admin
// endpoints the engine uses. Its log lines follow --log-format "%l|%v".
type fakeEnvoy struct {
	format string
	client *xdsclient.Client

	mu      sync.Mutex
	active  int  // downstream connections per listener
	stuck   bool // connections never end
	drained bool
}

func (f *fakeEnvoy) logf(level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if f.format == logFormat {
		msg = level + "|" + msg
	}
	fmt.Fprintln(os.Stderr, msg)
}

func fakeEnvoyMain(args []string) int {
	fs := flag.NewFlagSet("fake-envoy", flag.ContinueOnError)
	config := fs.String("c", "", "bootstrap")
	drain := fs.Int("drain-time-s", -1, "")
	parent := fs.Int("parent-shutdown-time-s", -1, "")
	noHotRestart := fs.Bool("disable-hot-restart", false, "")
	adminPath := fs.String("admin-address-path", "", "")
	level := fs.String("log-level", "", "")
	format := fs.String("log-format", "", "")
	fs.Bool(strings.TrimPrefix(fakeEnvoyFlag, "--"), false, "")
	fail := fs.Bool("fake-fail", false, "exit 1 at once")
	ignoreTerm := fs.Bool("fake-ignore-sigterm", false, "")
	active := fs.Int("fake-active", 0, "downstream connections per listener, ending one per stats query once drained")
	stuck := fs.Bool("fake-stuck", false, "connections never end")
	f := &fakeEnvoy{}
	if err := fs.Parse(args); err != nil {
		f.logf("critical", "fake envoy: %v", err)
		return 2
	}
	f.format, f.active, f.stuck = *format, *active, *stuck
	switch {
	case *drain <= 0 || *parent <= *drain:
		f.logf("critical", "fake envoy: --drain-time-s %d, --parent-shutdown-time-s %d", *drain, *parent)
		return 2
	case !*noHotRestart:
		f.logf("critical", "fake envoy: hot restart is on: two Envoys on one host would collide")
		return 2
	case *level != DefaultLogLevel:
		f.logf("critical", "fake envoy: --log-level %q", *level)
		return 2
	}
	if *fail {
		f.logf("critical", "fake envoy: failing as told")
		return 1
	}

	b, relayAddr, adminAddr, err := readBootstrap(*config)
	if err != nil {
		f.logf("critical", "fake envoy: %v", err)
		return 2
	}
	f.logf("info", "fake envoy: bootstrap ok node=%s cluster=%s relay=%s", b.GetNode().GetId(), b.GetNode().GetCluster(), relayAddr)
	f.logf("warning", "fake envoy: a warning for the level mapping")

	sigCh := make(chan os.Signal, 1)
	signal.Notify(sigCh, syscall.SIGTERM)

	ln, err := net.Listen("tcp", adminAddr)
	if err != nil {
		f.logf("critical", "fake envoy: admin: %v", err)
		return 1
	}
	if *adminPath != "" {
		if err := os.WriteFile(*adminPath, []byte(ln.Addr().String()), 0o600); err != nil {
			f.logf("critical", "fake envoy: %v", err)
			return 1
		}
	}
	f.client, err = xdsclient.New(xdsclient.Config{
		NodeID:  b.GetNode().GetId(),
		Servers: []string{relayAddr},
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnUpdate: func(s *xdsclient.Snapshot) {
			if s.Complete() {
				f.logf("info", "fake envoy: config received listeners=%s clusters=%d versions=%s",
					strings.Join(slices.Sorted(maps.Keys(s.Listeners)), ","), len(s.Clusters), versionsString(s.Versions))
			}
		},
	})
	if err != nil {
		f.logf("critical", "fake envoy: %v", err)
		return 2
	}
	go func() { _ = f.client.Run(context.Background()) }()
	go func() { _ = http.Serve(ln, f.handler()) }()

	for range sigCh {
		if *ignoreTerm {
			f.logf("warning", "fake envoy: ignoring SIGTERM")
			continue
		}
		f.logf("info", "fake envoy: SIGTERM, exiting")
		return 0
	}
	return 0
}

func versionsString(v map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(v)) {
		parts = append(parts, shortType(k)+":"+v[k])
	}
	return strings.Join(parts, ",")
}

// readBootstrap reads the bootstrap as Envoy does (YAML into the v3 proto),
// validates it, and returns the relay's and the admin's addresses.
func readBootstrap(path string) (*bootstrapv3.Bootstrap, string, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, "", "", err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, "", "", fmt.Errorf("bootstrap YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, "", "", fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, "", "", fmt.Errorf("bootstrap: %w", err)
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType() != core.ApiConfigSource_GRPC || ads.GetTransportApiVersion() != core.ApiVersion_V3 ||
		ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != RelayCluster {
		return nil, "", "", fmt.Errorf("bootstrap: ads_config %v", ads)
	}
	if b.GetDynamicResources().GetLdsConfig().GetAds() == nil || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
		return nil, "", "", errors.New("bootstrap: lds or cds not over ADS")
	}
	var relay string
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == RelayCluster && c.GetType() == clusterv3.Cluster_STATIC {
			relay = addrString(c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress())
		}
	}
	if relay == "" {
		return nil, "", "", errors.New("bootstrap: no static cluster " + RelayCluster)
	}
	return b, relay, addrString(b.GetAdmin().GetAddress()), nil
}

func (f *fakeEnvoy) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/listeners", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") != "json" {
			http.Error(w, "want format=json", http.StatusBadRequest)
			return
		}
		out := &adminv3.Listeners{}
		snap := f.client.Snapshot()
		for _, name := range slices.Sorted(maps.Keys(snap.Listeners)) {
			out.ListenerStatuses = append(out.ListenerStatuses, &adminv3.ListenerStatus{Name: name, LocalAddress: snap.Listeners[name].GetAddress()})
		}
		writeProto(w, out)
	})
	mux.HandleFunc("/clusters", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") != "json" {
			http.Error(w, "want format=json", http.StatusBadRequest)
			return
		}
		snap := f.client.Snapshot()
		out := &adminv3.Clusters{ClusterStatuses: []*adminv3.ClusterStatus{{Name: RelayCluster}}}
		for _, name := range slices.Sorted(maps.Keys(snap.Clusters)) {
			c := snap.Clusters[name]
			cla := c.GetLoadAssignment()
			if c.GetType() == clusterv3.Cluster_EDS {
				cla = snap.Endpoints[name]
			}
			cs := &adminv3.ClusterStatus{Name: name, AddedViaApi: true}
			for _, lle := range cla.GetEndpoints() {
				for _, e := range lle.GetLbEndpoints() {
					cs.HostStatuses = append(cs.HostStatuses, &adminv3.HostStatus{
						Address: e.GetEndpoint().GetAddress(),
						Stats: []*adminv3.SimpleMetric{
							{Name: "cx_total", Type: adminv3.SimpleMetric_COUNTER, Value: 5},
							{Name: "cx_active", Type: adminv3.SimpleMetric_GAUGE, Value: 2},
						},
					})
				}
			}
			out.ClusterStatuses = append(out.ClusterStatuses, cs)
		}
		writeProto(w, out)
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") != "json" {
			http.Error(w, "want format=json", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		if f.drained && !f.stuck && f.active > 0 {
			f.active--
		}
		active := f.active
		f.mu.Unlock()
		type stat struct {
			Name  string `json:"name"`
			Value any    `json:"value"`
		}
		stats := []any{
			stat{"listener.admin.downstream_cx_active", 1},
			stat{"server.version_text", "fake"},
		}
		snap := f.client.Snapshot()
		for _, name := range slices.Sorted(maps.Keys(snap.Listeners)) {
			l := snap.Listeners[name]
			sa := l.GetAddress().GetSocketAddress()
			prefix := "listener." + sa.GetAddress() + "_" + strconv.Itoa(int(sa.GetPortValue())) + "."
			stats = append(stats,
				stat{prefix + "downstream_cx_active", active},
				stat{prefix + "downstream_cx_total", 7},
				stat{prefix + "worker_0.downstream_cx_active", 99},
			)
			tcp := &tcpv3.TcpProxy{}
			if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(tcp); err == nil {
				tp := "tcp." + tcp.GetStatPrefix() + "."
				stats = append(stats,
					stat{tp + "downstream_cx_rx_bytes_total", 100},
					stat{tp + "downstream_cx_tx_bytes_total", 200},
					stat{tp + "downstream_cx_no_route", 1},
				)
			}
		}
		if expr := r.URL.Query().Get("filter"); expr != "" {
			re, err := regexp.Compile(expr)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			stats = slices.DeleteFunc(stats, func(s any) bool { return !re.MatchString(s.(stat).Name) })
		}
		stats = append(stats, map[string]any{"histograms": map[string]any{"supported_quantiles": []int{0, 50, 100}}})
		_ = json.NewEncoder(w).Encode(map[string]any{"stats": stats})
	})
	mux.HandleFunc("/drain_listeners", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		f.mu.Lock()
		f.drained = true
		f.mu.Unlock()
		f.logf("info", "fake envoy: drain_listeners %s", r.URL.RawQuery)
		fmt.Fprintln(w, "OK")
	})
	return mux
}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
