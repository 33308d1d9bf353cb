package envoy

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
	"github.com/kuma-ha/kuma-ha/dp/xdsclient"
)

func newRelay(t *testing.T, log *slog.Logger) *Relay {
	t.Helper()
	r, err := ListenRelay(RelayOptions{NodeID: "default.web-1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// runClient runs an Envoy-like ADS client against the relay until the test ends.
func runClient(t *testing.T, cfg xdsclient.Config) *xdsclient.Client {
	t.Helper()
	c, err := xdsclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return c
}

// sameConfig reports whether the client holds exactly cfg.
func sameConfig(s *xdsclient.Snapshot, cfg proxy.Config) bool {
	return s.Complete() && equalMaps(s.Listeners, cfg.Listeners) && equalMaps(s.Clusters, cfg.Clusters) &&
		equalMaps(s.Endpoints, cfg.Endpoints)
}

func equalMaps[M ~map[string]V, V proto.Message](a, b M) bool {
	return maps.EqualFunc(a, b, func(x, y V) bool { return proto.Equal(x, y) })
}

func TestRelayServesConfig(t *testing.T) {
	log, logs := newLogCapture(t)
	r := newRelay(t, log)
	cfg := generate(t, webDP, backend1)
	// db has no endpoint at all: the relay sends an empty load assignment.
	delete(cfg.Endpoints, "db")
	if err := r.Set(cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Endpoints["db"]; ok {
		t.Fatal("Set modified its input")
	}
	want := proxy.Config{Listeners: cfg.Listeners, Clusters: cfg.Clusters, Endpoints: maps.Clone(cfg.Endpoints)}
	want.Endpoints["db"] = &endpointv3.ClusterLoadAssignment{ClusterName: "db"}

	c := runClient(t, xdsclient.Config{NodeID: "default.web-1", Servers: []string{r.Addr()}, Logger: log})
	waitFor(t, "the config at the client", func() bool { return sameConfig(c.Snapshot(), want) })
	first := c.Snapshot()
	if got := slices.Sorted(maps.Keys(first.Listeners)); !slices.Equal(got, []string{"inbound:127.0.0.1:18080", "outbound:127.0.0.1:10001", "outbound:127.0.0.1:10002"}) {
		t.Fatalf("listeners %v", got)
	}
	if n := len(first.Endpoints["backend"].GetEndpoints()[0].GetLbEndpoints()); n != 1 {
		t.Fatalf("backend endpoints %d", n)
	}
	st := r.Status()
	if !maps.Equal(first.Versions, st.Versions) || len(st.Versions) != 3 {
		t.Fatalf("client versions %v, relay's %v", first.Versions, st.Versions)
	}
	waitFor(t, "ACKs at the relay", func() bool { return maps.Equal(r.Status().Acked, st.Versions) })
	if st := r.Status(); st.Streams != 1 || len(st.Rejected) != 0 {
		t.Fatalf("relay status %+v", st)
	}

	// Only endpoints change: only their version moves.
	cfg2 := generate(t, webDP, backend1, backend2)
	if err := r.Set(cfg2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new endpoints", func() bool { return sameConfig(c.Snapshot(), cfg2) })
	second := c.Snapshot()
	for _, typ := range []string{TypeListener, TypeCluster} {
		if second.Versions[typ] != first.Versions[typ] {
			t.Errorf("%s: version %s → %s, but nothing changed", shortType(typ), first.Versions[typ], second.Versions[typ])
		}
	}
	if second.Versions[TypeEndpoint] == first.Versions[TypeEndpoint] {
		t.Error("endpoints changed, their version did not")
	}
	if n := len(second.Endpoints["backend"].GetEndpoints()[0].GetLbEndpoints()); n != 2 {
		t.Fatalf("backend endpoints %d", n)
	}

	// Listeners and clusters go away: the client drops them and their endpoints.
	cfg3 := generate(t, `type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 18080
    servicePort: 18081
    tags: {kuma.io/service: web}`)
	if err := r.Set(cfg3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the smaller config", func() bool { return sameConfig(c.Snapshot(), cfg3) })
	if n := len(c.Snapshot().Endpoints); n != 0 {
		t.Fatalf("endpoints left: %d", n)
	}
	if n := len(logs.records(func(r logRecord) bool { return r.Level >= slog.LevelWarn })); n != 0 {
		t.Fatalf("%d warnings", n)
	}
}

// TestRelayVersions: a version is a digest of the type's resources: the same
// resources in other maps give the same versions, any change another.
func TestRelayVersions(t *testing.T) {
	r := newRelay(t, slog.New(slog.DiscardHandler))
	cfg := generate(t, webDP, backend1)
	if err := r.Set(cfg); err != nil {
		t.Fatal(err)
	}
	v1 := r.Status().Versions
	clone := proxy.Config{Listeners: maps.Clone(cfg.Listeners), Clusters: maps.Clone(cfg.Clusters), Endpoints: maps.Clone(cfg.Endpoints)}
	for k, l := range clone.Listeners {
		clone.Listeners[k] = proto.CloneOf(l)
	}
	if err := r.Set(clone); err != nil {
		t.Fatal(err)
	}
	if v2 := r.Status().Versions; !maps.Equal(v1, v2) {
		t.Fatalf("same config, versions %v then %v", v1, v2)
	}
	delete(clone.Listeners, "outbound:127.0.0.1:10002")
	if err := r.Set(clone); err != nil {
		t.Fatal(err)
	}
	v3 := r.Status().Versions
	if v3[TypeListener] == v1[TypeListener] || v3[TypeCluster] != v1[TypeCluster] || v3[TypeEndpoint] != v1[TypeEndpoint] {
		t.Fatalf("one listener less: versions %v then %v", v1, v3)
	}
	got, ok := r.Config()
	if !ok || len(got.Listeners) != 2 {
		t.Fatalf("Config() = %v, %v", got, ok)
	}
}

// TestRelayEndpointsFollowClusters: a load assignment without its EDS
// cluster is not served (ADS mode would hold every EDS answer), one named
// differently from its key is served under its key.
func TestRelayEndpointsFollowClusters(t *testing.T) {
	log, _ := newLogCapture(t)
	r := newRelay(t, log)
	cfg := generate(t, webDP, backend1)
	cfg.Endpoints["gone"] = &endpointv3.ClusterLoadAssignment{ClusterName: "gone"}
	misnamed := proto.CloneOf(cfg.Endpoints["db"])
	misnamed.ClusterName = ""
	cfg.Endpoints["db"] = misnamed
	if err := r.Set(cfg); err != nil {
		t.Fatal(err)
	}
	if misnamed.ClusterName != "" {
		t.Fatal("Set modified its input")
	}
	c := runClient(t, xdsclient.Config{NodeID: "default.web-1", Servers: []string{r.Addr()}, Logger: log})
	waitFor(t, "the endpoints", func() bool {
		s := c.Snapshot()
		return s.Complete() && len(s.Endpoints) == 2 && s.Endpoints["db"] != nil && s.Endpoints["backend"] != nil
	})
}

// TestRelayNACK: Envoy's NACK is recorded and logged at WARN once per
// version; the ACKed version stays.
func TestRelayNACK(t *testing.T) {
	log, logs := newLogCapture(t)
	r := newRelay(t, log)
	cfg := generate(t, webDP, backend1)
	if err := r.Set(cfg); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reject := false
	c := runClient(t, xdsclient.Config{NodeID: "default.web-1", Servers: []string{r.Addr()}, Logger: log,
		Reject: func(typeURL string, _ []proto.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if reject && typeURL == TypeListener {
				return errors.New("listener port in use")
			}
			return nil
		}})
	waitFor(t, "the config", func() bool { return sameConfig(c.Snapshot(), cfg) })
	good := r.Status().Versions[TypeListener]
	waitFor(t, "the ACK", func() bool { return r.Status().Acked[TypeListener] == good })

	mu.Lock()
	reject = true
	mu.Unlock()
	nacks := func() []logRecord {
		return logs.records(func(r logRecord) bool { return r.Level == slog.LevelWarn && r.Attrs["component"] == "envoy-relay" })
	}
	var versions []string
	for i, port := range []string{"10003", "10004"} {
		bad := generate(t, webDP+"\n  - port: "+port+"\n    tags: {kuma.io/service: backend}", backend1)
		if err := r.Set(bad); err != nil {
			t.Fatal(err)
		}
		v := r.Status().Versions[TypeListener]
		versions = append(versions, v)
		waitFor(t, "the NACK", func() bool { return r.Status().Rejected[TypeListener].Version == v })
		st := r.Status()
		if !strings.Contains(st.Rejected[TypeListener].Error, "listener port in use") || st.Acked[TypeListener] != good {
			t.Fatalf("relay status %+v", st)
		}
		// Set again with the same listeners: nothing is sent, nothing logged again.
		if err := r.Set(bad); err != nil {
			t.Fatal(err)
		}
		if n := len(nacks()); n != i+1 {
			t.Fatalf("%d NACK warnings after %d rejected versions", n, i+1)
		}
		if got := nacks()[i]; got.Attrs["version"] != v || got.Attrs["type"] != "listeners" || got.Attrs["keeps"] != good {
			t.Fatalf("warning %+v", got)
		}
	}
	if versions[0] == versions[1] {
		t.Fatal("two configs, one version")
	}
	// The rejected config is not sent again and again: once endpoints
	// sent after it have arrived, the client has NACKed each version once.
	cfg2 := generate(t, webDP+"\n  - port: 10004\n    tags: {kuma.io/service: backend}", backend1, backend2)
	if err := r.Set(cfg2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new endpoints", func() bool { return equalMaps(c.Snapshot().Endpoints, cfg2.Endpoints) })
	if n := c.Status().NACKs; n != 2 {
		t.Fatalf("the client sent %d NACKs for 2 rejected versions", n)
	}
	if c.Snapshot().Versions[TypeListener] != good {
		t.Fatal("the client took a rejected config")
	}
}

func TestRelayRefusesOtherNodes(t *testing.T) {
	log, logs := newLogCapture(t)
	r := newRelay(t, log)
	if err := r.Set(generate(t, webDP)); err != nil {
		t.Fatal(err)
	}
	c := runClient(t, xdsclient.Config{NodeID: "default.other", Servers: []string{r.Addr()}, Logger: slog.New(slog.DiscardHandler)})
	waitFor(t, "the refusal", func() bool { return status.Code(c.Status().LastError) == codes.PermissionDenied })
	logs.waitLog(t, "refusal", msgHas("refusing an ADS stream from another node"))
	if s := c.Snapshot(); s.Complete() {
		t.Fatal("another node got the config")
	}
}

func TestRelayClose(t *testing.T) {
	r, err := ListenRelay(RelayOptions{NodeID: "default.web-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set(generate(t, webDP)); err != nil {
		t.Fatal(err)
	}
	c := runClient(t, xdsclient.Config{NodeID: "default.web-1", Servers: []string{r.Addr()}, Logger: slog.New(slog.DiscardHandler)})
	waitFor(t, "a stream", func() bool { return r.Status().Streams == 1 })
	r.Close()
	r.Close()
	waitFor(t, "the client to notice", func() bool { return !c.Status().Connected })
	if _, err := ListenRelay(RelayOptions{}); err == nil {
		t.Fatal("a relay without NodeID")
	}
}
