package xdsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
	"github.com/kuma-ha/kuma-ha/xds"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConstantsMatchServer(t *testing.T) {
	if ShedPrefix != xds.ShedPrefix {
		t.Errorf("ShedPrefix %q, server's %q", ShedPrefix, xds.ShedPrefix)
	}
	if RegisterUnavailablePrefix != xds.RegisterUnavailablePrefix {
		t.Errorf("RegisterUnavailablePrefix %q, server's %q", RegisterUnavailablePrefix, xds.RegisterUnavailablePrefix)
	}
	if MetadataDataplane != xds.MetadataDataplane {
		t.Errorf("MetadataDataplane %q, server's %q", MetadataDataplane, xds.MetadataDataplane)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node id", Config{Servers: []string{"127.0.0.1:1"}}, "NodeID: required"},
		{"node id without mesh", Config{NodeID: "web", Servers: []string{"127.0.0.1:1"}}, "NodeID"},
		{"node id ending in a dot", Config{NodeID: "default.", Servers: []string{"127.0.0.1:1"}}, "NodeID"},
		{"no servers", Config{NodeID: "default.web"}, "Servers: at least one"},
		{"no port", Config{NodeID: "default.web", Servers: []string{"127.0.0.1"}}, "Servers[0]"},
		{"bad port", Config{NodeID: "default.web", Servers: []string{"127.0.0.1:0", "h:99999"}}, "Servers[1]"},
		{"tls", Config{NodeID: "default.web", Servers: []string{"grpcs://cp:5678"}}, "grpcs"},
		{"http", Config{NodeID: "default.web", Servers: []string{"http://cp:5678"}}, "scheme"},
		{"backoff", Config{NodeID: "default.web", Servers: []string{"cp:5678"}, MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	c, err := New(Config{NodeID: "default.web", Servers: []string{"grpc://cp-1:5678", "127.0.0.1:5678"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Status().Servers; !slices.Equal(got, []string{"cp-1:5678", "127.0.0.1:5678"}) {
		t.Fatalf("servers = %v", got)
	}
	if err := c.Run(canceled()); err != nil {
		t.Fatal(err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestShedHint(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.Unavailable, ShedPrefix+"10.0.0.1:5678"), "10.0.0.1:5678"},
		{status.Error(codes.Unavailable, ShedPrefix+""), ""},
		{status.Error(codes.Unavailable, ShedPrefix+"nonsense"), ""},
		{status.Error(codes.Unavailable, "stream shed"), ""},
		{status.Error(codes.Internal, ShedPrefix+"10.0.0.1:5678"), ""},
		{errors.New(ShedPrefix + "10.0.0.1:5678"), ""},
		{nil, ""},
	} {
		if got := ShedHint(tc.err); got != tc.want {
			t.Errorf("ShedHint(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if got, server := ShedHint(tc.err), xds.ShedHint(tc.err); got != "" && got != server {
			t.Errorf("ShedHint(%v) = %q, server's %q", tc.err, got, server)
		}
	}
}

// TestSotW: initial config, pushes of added and deleted endpoints, ACKs.
func TestSotW(t *testing.T) {
	tc := newTestCluster(t, 1)
	tc.put(dpDoc("backend-1", "10.0.0.2", "backend"))
	tc.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
	c := newClient(t, Config{NodeID: "default.web-1", Servers: tc.addrs()})
	runClient(t, c)

	s := waitEndpoints(t, c, "backend", "10.0.0.2:8080")
	if got := slices.Sorted(maps.Keys(s.Listeners)); !slices.Equal(got, []string{"inbound:10.0.0.1:8080", "outbound:127.0.0.1:10001"}) {
		t.Fatalf("listeners = %v", got)
	}
	if _, ok := s.Clusters["backend"]; !ok {
		t.Fatalf("clusters = %v", slices.Sorted(maps.Keys(s.Clusters)))
	}
	if !s.Complete() || s.Server != tc.replicas[0].addr || s.ResourceVersions != nil {
		t.Fatalf("snapshot: complete %v, server %q, resource versions %v", s.Complete(), s.Server, s.ResourceVersions)
	}
	for _, typ := range []string{TypeListener, TypeCluster, TypeEndpoint} {
		if s.Versions[typ] == "" {
			t.Fatalf("no version for %s", typ)
		}
	}

	tc.put(dpDoc("backend-2", "10.0.0.3", "backend"))
	s2 := waitEndpoints(t, c, "backend", "10.0.0.2:8080", "10.0.0.3:8080")
	if s2.Versions[TypeEndpoint] == s.Versions[TypeEndpoint] || s2.Versions[TypeListener] != s.Versions[TypeListener] {
		t.Fatalf("versions %v -> %v", s.Versions, s2.Versions)
	}
	tc.delete("backend-1")
	waitEndpoints(t, c, "backend", "10.0.0.3:8080")

	// A new outbound adds a cluster and its load assignment.
	tc.put(dpDoc("db-1", "10.0.1.1", "db"))
	tc.put(dpDoc("web-1", "10.0.0.1", "web", "backend", "db"))
	waitEndpoints(t, c, "db", "10.0.1.1:8080")
	// And removing it drops both.
	tc.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
	waitFor(t, "db dropped", func() bool {
		s := c.Snapshot()
		_, cl := s.Clusters["db"]
		_, ep := s.Endpoints["db"]
		return !cl && !ep
	})

	st := c.Status()
	if !st.Connected || st.Server != tc.replicas[0].addr || st.ACKs < 5 || st.NACKs != 0 || st.Reconnects != 0 {
		t.Fatalf("status %+v", st)
	}
	select {
	case <-c.Updates():
	default:
		t.Fatal("Updates not signalled")
	}
}

// TestNACK: a rejected response keeps the previous config, is recorded by
// the server, and later pushes still arrive.
func TestNACK(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			tc := newTestCluster(t, 1)
			tc.put(dpDoc("backend-1", "10.0.0.2", "backend"))
			tc.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
			var rejected atomic.Int32
			c := newClient(t, Config{NodeID: "default.web-1", Servers: tc.addrs(), Delta: delta,
				Reject: func(typeURL string, res []proto.Message) error {
					for _, m := range res {
						cla, ok := m.(*endpointv3.ClusterLoadAssignment)
						if ok && strings.Contains(cla.String(), "10.0.0.3") && rejected.Add(1) == 1 {
							return errors.New("test: no 10.0.0.3")
						}
					}
					return nil
				}})
			runClient(t, c)
			before := waitEndpoints(t, c, "backend", "10.0.0.2:8080")

			tc.put(dpDoc("backend-2", "10.0.0.3", "backend"))
			waitFor(t, "a NACK", func() bool { return c.Status().NACKs == 1 })
			if c.Snapshot() != before {
				t.Fatal("the rejected config replaced the previous one")
			}
			if err := c.Status().LastError; err == nil || !strings.Contains(err.Error(), "test: no 10.0.0.3") {
				t.Fatalf("last error %v", err)
			}
			waitFor(t, "the NACK in the insight", func() bool {
				ins, ok := tc.replicas[0].state.Get(resource.Key{Type: resource.TypeDataplaneInsight, Mesh: "default", Name: "web-1"})
				return ok && strings.Contains(ins.Spec.(*resource.DataplaneInsightSpec).Latest().Status.LastNACKError, "test: no 10.0.0.3")
			})

			tc.put(dpDoc("backend-3", "10.0.0.4", "backend"))
			waitEndpoints(t, c, "backend", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080")
		})
	}
}

// TestReconnectKeepsConfig: when its replica goes, the client moves to
// another, keeps its config and versions meanwhile, gets nothing resent
// (versions match), and receives later changes from the new replica.
func TestReconnectKeepsConfig(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			tc := newTestCluster(t, 2)
			tc.put(dpDoc("backend-1", "10.0.0.2", "backend"))
			tc.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
			c := newClient(t, Config{NodeID: "default.web-1", Servers: tc.addrs(), Delta: delta})
			runClient(t, c)
			before := waitEndpoints(t, c, "backend", "10.0.0.2:8080")
			waitFor(t, "connected", func() bool { return c.Status().Connected })
			responses := c.Status().Responses

			tc.replicas[0].stop()
			waitFor(t, "reconnected to the second replica", func() bool {
				st := c.Status()
				return st.Connected && st.Server == tc.replicas[1].addr
			})
			// The new replica has the same state: it must send nothing.
			time.Sleep(300 * time.Millisecond)
			if st := c.Status(); st.Responses != responses || st.Reconnects != 1 {
				t.Fatalf("after the reconnect: %d responses (had %d), %d reconnects", st.Responses, responses, st.Reconnects)
			}
			if c.Snapshot() != before {
				t.Fatal("snapshot replaced although nothing changed")
			}

			tc.put(dpDoc("backend-2", "10.0.0.3", "backend"))
			after := waitEndpoints(t, c, "backend", "10.0.0.2:8080", "10.0.0.3:8080")
			if after.Server != tc.replicas[1].addr {
				t.Fatalf("change came from %s", after.Server)
			}
			if !proto.Equal(after.Listeners["inbound:10.0.0.1:8080"], before.Listeners["inbound:10.0.0.1:8080"]) {
				t.Fatal("listener changed")
			}
			if delta && after.ResourceVersions[TypeEndpoint]["backend"] == before.ResourceVersions[TypeEndpoint]["backend"] {
				t.Fatalf("resource versions: %v", after.ResourceVersions)
			}
		})
	}
}

// TestShedHintFollowed: a replica that sheds the stream names where to go;
// the client goes there, not to the next replica in its list.
func TestShedHintFollowed(t *testing.T) {
	tc := newTestCluster(t, 2)
	tc.put(dpDoc("web-1", "10.0.0.1", "web"))
	// A third "replica" that would be next in round robin: it counts
	// connection attempts and never serves.
	trap, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var trapped atomic.Int32
	go func() {
		for {
			conn, err := trap.Accept()
			if err != nil {
				return
			}
			trapped.Add(1)
			_ = conn.Close()
		}
	}()
	defer trap.Close()

	c := newClient(t, Config{NodeID: "default.web-1", Servers: []string{tc.replicas[0].addr, trap.Addr().String(), tc.replicas[1].addr}})
	runClient(t, c)
	waitFor(t, "config", func() bool { return c.Snapshot().Complete() && c.Status().Connected })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc.replicas[0].srv.Shutdown(ctx) // sheds every stream towards the other replica
	waitFor(t, "moved to the hinted replica", func() bool {
		st := c.Status()
		return st.Connected && st.Server == tc.replicas[1].addr
	})
	if n := trapped.Load(); n != 0 {
		t.Fatalf("the client tried the next replica in its list (%d connections) instead of the hinted one", n)
	}
	if err := c.Status().LastError; ShedHint(err) != tc.replicas[1].addr {
		t.Fatalf("last error %v", err)
	}
}

// TestSelfRegistration: the Dataplane in node metadata is registered.
func TestSelfRegistration(t *testing.T) {
	tc := newTestCluster(t, 1)
	c := newClient(t, Config{NodeID: "default.web-1", Servers: tc.addrs(), Dataplane: []byte(dpDoc("web-1", "10.0.0.1", "web"))})
	runClient(t, c)
	waitFor(t, "config", func() bool { return c.Snapshot().Complete() })
	dp, ok := tc.replicas[0].state.Get(resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "web-1"})
	if !ok || dp.Labels[fsm.LabelRegisteredBy] != fsm.RegisteredByProxy {
		t.Fatalf("registered: %v %+v", ok, dp)
	}
	// An unknown proxy without a Dataplane keeps retrying and says why.
	c2 := newClient(t, Config{NodeID: "default.nobody", Servers: tc.addrs()})
	runClient(t, c2)
	waitFor(t, "NOT_FOUND", func() bool { return status.Code(c2.Status().LastError) == codes.NotFound })
	if s := c2.Snapshot(); s.Has(TypeListener) {
		t.Fatal("config for an unknown proxy")
	}
}

// TestSnapshotPersisted: a snapshot survives MarshalJSON/UnmarshalJSON, and
// a client started from it with the same state gets nothing resent.
func TestSnapshotPersisted(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			tc := newTestCluster(t, 1)
			tc.put(dpDoc("backend-1", "10.0.0.2", "backend"))
			tc.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
			ctx, cancel := context.WithCancel(context.Background())
			c := newClient(t, Config{NodeID: "default.web-1", Servers: tc.addrs(), Delta: delta})
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			saved := waitEndpoints(t, c, "backend", "10.0.0.2:8080")
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if c.Snapshot() != saved {
				t.Fatal("config dropped when the client stopped")
			}
			data, err := json.Marshal(saved)
			if err != nil {
				t.Fatal(err)
			}
			var back Snapshot
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			assertSameConfig(t, saved, &back)

			c2 := newClient(t, Config{NodeID: "default.web-1", Servers: tc.addrs(), Delta: delta, Initial: &back})
			if got := c2.Snapshot(); !slices.Equal(endpoints(got, "backend"), []string{"10.0.0.2:8080"}) {
				t.Fatal("Initial not served before connecting")
			}
			runClient(t, c2)
			waitFor(t, "connected", func() bool { return c2.Status().Connected })
			time.Sleep(300 * time.Millisecond)
			if n := c2.Status().Responses; n != 0 {
				t.Fatalf("%d responses for a current config", n)
			}
			tc.put(dpDoc("backend-2", "10.0.0.3", "backend"))
			waitEndpoints(t, c2, "backend", "10.0.0.2:8080", "10.0.0.3:8080")

			for _, bad := range []string{`{`, `{"format":99}`, `{"format":1,"resources":[{"typeUrl":"x","name":"a","value":""}]}`,
				`{"format":1,"resources":[{"typeUrl":"` + TypeCluster + `","name":"a","value":"AAAA"}]}`} {
				if err := json.Unmarshal([]byte(bad), &back); err == nil {
					t.Errorf("UnmarshalJSON(%s) accepted", bad)
				}
			}
		})
	}
}

func assertSameConfig(t *testing.T, a, b *Snapshot) {
	t.Helper()
	if !maps.Equal(a.Versions, b.Versions) || a.Server != b.Server || !a.UpdatedAt.Equal(b.UpdatedAt) {
		t.Fatalf("versions %v/%v server %q/%q", a.Versions, b.Versions, a.Server, b.Server)
	}
	for typ, m := range a.ResourceVersions {
		if !maps.Equal(m, b.ResourceVersions[typ]) {
			t.Fatalf("resource versions of %s: %v vs %v", typ, m, b.ResourceVersions[typ])
		}
	}
	eq := func(x, y map[string]proto.Message) {
		if len(x) != len(y) {
			t.Fatalf("%d vs %d resources", len(x), len(y))
		}
		for k, v := range x {
			if !proto.Equal(v, y[k]) {
				t.Fatalf("resource %s differs", k)
			}
		}
	}
	eq(generic(a.Listeners), generic(b.Listeners))
	eq(generic(a.Clusters), generic(b.Clusters))
	eq(generic(a.Endpoints), generic(b.Endpoints))
}

func generic[M proto.Message](m map[string]M) map[string]proto.Message {
	out := map[string]proto.Message{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestDiscover: replicas learned from the API are used for failover.
func TestDiscover(t *testing.T) {
	tc := newTestCluster(t, 2)
	tc.put(dpDoc("web-1", "10.0.0.1", "web"))
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cluster" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"leader":"cp-1","replicas":[{"name":"cp-0","xdsAddress":"","healthy":true},`+
			`{"name":"cp-2","xdsAddress":%q,"healthy":false},{"name":"cp-1","xdsAddress":%q,"healthy":true}]}`,
			tc.replicas[1].addr, tc.replicas[0].addr)
	}))
	defer api.Close()

	got, err := DiscoverFromAPI([]string{"http://127.0.0.1:1", api.URL + "/"})(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{tc.replicas[0].addr, tc.replicas[1].addr}; !slices.Equal(got, want) {
		t.Fatalf("discovered %v, want healthy first %v", got, want)
	}
	if _, err := DiscoverFromAPI([]string{"http://127.0.0.1:1"})(context.Background()); err == nil {
		t.Fatal("no error from an unreachable API")
	}

	// Given only the first replica, the client learns the second and fails over to it.
	c := newClient(t, Config{NodeID: "default.web-1", Servers: []string{tc.replicas[0].addr}, Discover: DiscoverFromAPI([]string{api.URL})})
	runClient(t, c)
	waitFor(t, "discovery", func() bool { return len(c.Status().Servers) == 2 && c.Status().Connected })
	tc.replicas[0].stop()
	waitFor(t, "failover to the discovered replica", func() bool {
		st := c.Status()
		return st.Connected && st.Server == tc.replicas[1].addr
	})
}

// TestFleet: many clients share connections and decoded resources.
func TestFleet(t *testing.T) {
	tc := newTestCluster(t, 1)
	tc.put(dpDoc("backend-1", "10.0.0.2", "backend"))
	fleet := NewFleet(3)
	defer fleet.Close()
	var clients []*Client
	for i := range 7 {
		name := fmt.Sprintf("web-%d", i)
		tc.put(dpDoc(name, fmt.Sprintf("10.0.0.%d", 10+i), "web", "backend"))
		c := newClient(t, Config{NodeID: "default." + name, Servers: tc.addrs(), Fleet: fleet})
		runClient(t, c)
		clients = append(clients, c)
	}
	for _, c := range clients {
		waitEndpoints(t, c, "backend", "10.0.0.2:8080")
	}
	fleet.mu.Lock()
	conns := len(fleet.conns[tc.replicas[0].addr])
	fleet.mu.Unlock()
	if conns != 3 {
		t.Fatalf("%d connections for 7 streams at 3 per connection", conns)
	}
	if a, b := clients[0].Snapshot().Endpoints["backend"], clients[6].Snapshot().Endpoints["backend"]; a != b {
		t.Fatal("identical load assignments decoded twice")
	}
	tc.put(dpDoc("backend-2", "10.0.0.3", "backend"))
	for _, c := range clients {
		waitEndpoints(t, c, "backend", "10.0.0.2:8080", "10.0.0.3:8080")
	}
}

func TestBackoff(t *testing.T) {
	c, err := New(Config{NodeID: "default.web", Servers: []string{"cp:1"}})
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		for range 20 {
			if d := c.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", n, d, want/2, want)
			}
		}
	}
	if d := c.backoff(100); d > DefaultMaxBackoff || d < DefaultMaxBackoff/2 {
		t.Fatalf("backoff(100) = %s", d)
	}
	// Round robin, hint first.
	c.cfg.Servers = []string{"a:1", "b:1", "c:1"}
	if got := []string{c.pick("", ""), c.pick("a:1", ""), c.pick("c:1", ""), c.pick("a:1", "x:1"), c.pick("x:1", "")}; !slices.Equal(got, []string{"a:1", "b:1", "a:1", "x:1", "a:1"}) {
		t.Fatalf("picks %v", got)
	}
}
