package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const node = "default.web-1"

// fakeEngine records what the agent hands it.
type fakeEngine struct {
	mu      sync.Mutex
	applied []proxy.Config
	shut    bool
	invalid string // a listener name Validate refuses
}

func (e *fakeEngine) Validate(cfg proxy.Config) error {
	if _, bad := cfg.Listeners[e.invalid]; bad && e.invalid != "" {
		return fmt.Errorf("listener %q: not supported", e.invalid)
	}
	// Like the built-in proxy: two listeners on one address cannot run,
	// which only a check of the whole set (old and new) sees.
	seen := map[uint32]string{}
	for name, l := range cfg.Listeners {
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		if other, dup := seen[port]; dup {
			return fmt.Errorf("listeners %q and %q: same port %d", name, other, port)
		}
		seen[port] = name
	}
	return nil
}
func (e *fakeEngine) Apply(cfg proxy.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.applied = append(e.applied, cfg)
	return nil
}
func (e *fakeEngine) Status() proxy.Status { return proxy.Status{} }
func (e *fakeEngine) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shut = true
	return nil
}
func (e *fakeEngine) last() (proxy.Config, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.applied) == 0 {
		return proxy.Config{}, 0
	}
	return e.applied[len(e.applied)-1], len(e.applied)
}

// controlPlane is a go-control-plane ADS server with a snapshot cache,
// standing in for a replica.
type controlPlane struct {
	addr   string
	cache  cachev3.SnapshotCache
	srv    *grpc.Server
	done   chan struct{}
	refuse error // returned to every request when set
}

func startControlPlane(t *testing.T, addr string, refuse error) *controlPlane {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: l.Addr().String(), cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		srv: grpc.NewServer(), done: make(chan struct{}), refuse: refuse}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(int64, *discovery.DiscoveryRequest) error { return cp.refuse }}
	discovery.RegisterAggregatedDiscoveryServiceServer(cp.srv, serverv3.NewServer(context.Background(), cp.cache, cb))
	go func() { defer close(cp.done); _ = cp.srv.Serve(l) }()
	t.Cleanup(cp.stop)
	return cp
}

func (cp *controlPlane) stop() {
	cp.srv.Stop()
	<-cp.done
}

func listener(name string, port uint32) *listenerv3.Listener {
	tcp, _ := anypb.New(&tcpv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "backend"}})
	return &listenerv3.Listener{Name: name, Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp}}}}}}
}

func (cp *controlPlane) set(t *testing.T, version string, listeners ...string) {
	t.Helper()
	var ls []*listenerv3.Listener
	for i, n := range listeners {
		ls = append(ls, listener(n, uint32(20000+i)))
	}
	cp.setListeners(t, version, ls...)
}

func (cp *controlPlane) setListeners(t *testing.T, version string, listeners ...*listenerv3.Listener) {
	t.Helper()
	var ls []types.Resource
	for _, l := range listeners {
		ls = append(ls, l)
	}
	cl := &clusterv3.Cluster{Name: "backend", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout: durationpb.New(time.Second)}
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: ls, resourcev3.ClusterType: {cl}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination tests read while the agent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	a      *Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop ends Run and waits for it; calling it again does nothing.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func newAgent(t *testing.T, dir string, eng Engine, logs io.Writer, servers ...string) *Agent {
	t.Helper()
	return newAgentDelta(t, dir, eng, logs, false, servers...)
}

func newAgentDelta(t *testing.T, dir string, eng Engine, logs io.Writer, delta bool, servers ...string) *Agent {
	t.Helper()
	state, err := OpenStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(state.Close)
	a, err := New(Config{NodeID: node, Servers: servers, Delta: delta, State: state, AdminAddr: "127.0.0.1:0", Engine: eng,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func run(t *testing.T, a *Agent) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

// TestServeFreezeRestart: config from a replica reaches the engine and the
// state dir; with the replica gone the agent says once that it is frozen;
// a new agent on the same state dir serves the saved config before it
// reaches any replica.
func TestServeFreezeRestart(t *testing.T) {
	dir := t.TempDir()
	cp := startControlPlane(t, "127.0.0.1:0", nil)
	cp.set(t, "1", "inbound:127.0.0.1:20000")
	eng := &fakeEngine{}
	var logs syncBuffer
	a := newAgent(t, dir, eng, &logs, cp.addr)
	admin := "http://" + a.AdminAddr()
	r := run(t, a)
	defer r.stop(t)
	waitFor(t, "the listener applied", func() bool {
		cfg, _ := eng.last()
		_, ok := cfg.Listeners["inbound:127.0.0.1:20000"]
		return ok
	})
	var st Status
	waitFor(t, "status connected", func() bool {
		getJSON(t, admin+"/status", &st)
		return st.Connected && st.Ready && st.ConfigSource == sourceControlPlane && st.ConfigVersion["lds"] == "1"
	})
	if code := getJSON(t, admin+"/ready", nil); code != http.StatusOK {
		t.Fatalf("/ready %d", code)
	}
	var cfg map[string]any
	if code := getJSON(t, admin+"/config", &cfg); code != http.StatusOK || !strings.Contains(fmt.Sprint(cfg["listeners"]), "inbound:127.0.0.1:20000") {
		t.Fatalf("/config %d: %v", code, cfg)
	}
	waitFor(t, "config saved", func() bool {
		_, err := os.Stat(filepath.Join(dir, stateFile))
		return err == nil
	})

	// A change replaces the listener.
	cp.set(t, "2", "inbound:127.0.0.1:20001")
	waitFor(t, "the change applied", func() bool {
		cfg, _ := eng.last()
		_, ok := cfg.Listeners["inbound:127.0.0.1:20001"]
		return ok && len(cfg.Listeners) == 1
	})

	// Every replica gone: frozen, said once.
	cp.stop()
	waitFor(t, "frozen", func() bool {
		getJSON(t, admin+"/status", &st)
		return st.Frozen && st.Ready && !st.Connected
	})
	waitFor(t, "more failed attempts", func() bool { return a.client.Status().Failures >= 4 })
	if n := strings.Count(logs.String(), "no control plane replica is reachable"); n != 1 {
		t.Fatalf("frozen said %d times, want once:\n%s", n, logs.String())
	}
	_, applied := eng.last()
	r.stop(t)
	if !eng.shut {
		t.Fatal("engine not shut down")
	}
	a.cfg.State.Close()

	// Restart with nothing reachable: the saved config is applied in New.
	eng2 := &fakeEngine{}
	a2 := newAgent(t, dir, eng2, io.Discard, cp.addr)
	cfg2, n := eng2.last()
	if n != 1 || len(cfg2.Listeners) != 1 || cfg2.Listeners["inbound:127.0.0.1:20001"] == nil {
		t.Fatalf("after restart the engine got %d configs: %v (first run applied %d)", n, cfg2.Listeners, applied)
	}
	r2 := run(t, a2)
	defer r2.stop(t)
	waitFor(t, "frozen from the state dir", func() bool {
		getJSON(t, "http://"+a2.AdminAddr()+"/status", &st)
		return st.Frozen && st.Ready && st.ConfigSource == sourceStateDir
	})

	// A replica comes back at the same address: thawed, and changes flow.
	cp2 := startControlPlane(t, cp.addr, nil)
	cp2.set(t, "3", "inbound:127.0.0.1:20001", "inbound:127.0.0.1:20002")
	waitFor(t, "thawed with the new config", func() bool {
		cfg, _ := eng2.last()
		return len(cfg.Listeners) == 2 && !a2.Status().Frozen
	})
}

// TestNACKWhenEngineCannotRun: config the engine refuses is NACKed and the
// config in use stays.
func TestNACKWhenEngineCannotRun(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			cp := startControlPlane(t, "127.0.0.1:0", nil)
			cp.set(t, "1", "good")
			eng := &fakeEngine{invalid: "bad"}
			a := newAgentDelta(t, t.TempDir(), eng, io.Discard, delta, cp.addr)
			r := run(t, a)
			defer r.stop(t)
			waitFor(t, "good applied", func() bool { _, n := eng.last(); return n == 1 })
			cp.set(t, "2", "good", "bad")
			waitFor(t, "a NACK", func() bool { return a.Status().NACKs > 0 })
			// A listener that is fine alone but clashes with one in use: in
			// delta the response carries only the new one, so the check must
			// see it with the listeners already accepted.
			cp.setListeners(t, "3", listener("good", 20000), listener("clash", 20000))
			waitFor(t, "a second NACK", func() bool { return a.Status().NACKs > 1 })
			// Clusters of versions 2 and 3 are fine and accepted; the listeners not.
			eng.mu.Lock()
			for i, cfg := range eng.applied {
				if len(cfg.Listeners) != 1 || cfg.Listeners["good"] == nil {
					t.Errorf("config %d applied: %v", i, cfg.Listeners)
				}
			}
			eng.mu.Unlock()
			if v := a.Status().ConfigVersion["lds"]; v != "1" {
				t.Fatalf("version in use %q, want 1", v)
			}
		})
	}
}

// TestRefusalLoggedOnce: a control plane that refuses the proxy (here: as
// if it could not register it without a quorum) is logged with its reason,
// once, however often the proxy retries.
func TestRefusalLoggedOnce(t *testing.T) {
	refusal := status.Error(codes.Unavailable, "cannot register Dataplane default/web-1: no quorum: no leader")
	cp := startControlPlane(t, "127.0.0.1:0", refusal)
	var logs syncBuffer
	a := newAgent(t, t.TempDir(), &fakeEngine{}, &logs, cp.addr)
	r := run(t, a)
	defer r.stop(t)
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), "the control plane refuses this proxy") })
	waitFor(t, "more attempts", func() bool { return a.client.Status().Failures >= 4 })
	if n := strings.Count(logs.String(), "the control plane refuses this proxy"); n != 1 {
		t.Fatalf("refusal logged %d times", n)
	}
	if !strings.Contains(logs.String(), "no quorum") {
		t.Fatalf("the reason is not in the log:\n%s", logs.String())
	}
	if code := getJSON(t, "http://"+a.AdminAddr()+"/ready", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready %d without config", code)
	}
	if a.Status().Frozen {
		t.Fatal("frozen without any config")
	}
}

// TestUnreachableWithoutConfigSaidOnce: a new proxy that reaches no
// replica says so once, not in a loop, and is not ready.
func TestUnreachableWithoutConfigSaidOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	var logs syncBuffer
	a := newAgent(t, t.TempDir(), &fakeEngine{}, &logs, addr)
	r := run(t, a)
	defer r.stop(t)
	waitFor(t, "said", func() bool {
		return strings.Contains(logs.String(), "no control plane replica is reachable, and there is no saved config")
	})
	waitFor(t, "more attempts", func() bool { return a.client.Status().Failures >= 4 })
	if n := strings.Count(logs.String(), "no control plane replica is reachable"); n != 1 {
		t.Fatalf("said %d times:\n%s", n, logs.String())
	}
	if st := a.Status(); st.Ready || st.Frozen {
		t.Fatalf("status %+v", st)
	}
}

func TestStateDir(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStateDir(dir); err == nil || !strings.Contains(err.Error(), "in use by another kuma-dp") {
		t.Fatalf("second open: %v", err)
	}
	if snap, _, err := d.Load(node); err != nil || snap != nil {
		t.Fatalf("empty dir: %v %v", snap, err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Load(node); err == nil || !strings.Contains(err.Error(), stateFile) {
		t.Fatalf("torn file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"format":1,"node":"default.other","config":{"format":1,"resources":[]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Load(node); err == nil || !strings.Contains(err.Error(), "default.other") {
		t.Fatalf("another proxy's file: %v", err)
	}
	d.Close()
	if d2, err := OpenStateDir(dir); err != nil {
		t.Fatalf("after Close: %v", err)
	} else {
		d2.Close()
	}

	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStateDir(filepath.Join(file, "sub")); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("state dir under a file: %v", err)
	}
	if _, err := OpenStateDir(""); err == nil {
		t.Fatal("empty state dir accepted")
	}
}

// FuzzLoad: whatever the state file holds, Load returns a config or an
// error, never panics.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"format":1,"node":"default.web-1","config":{"format":1,"resources":[]}}`))
	f.Add([]byte(`{"format":1,"node":"default.web-1","config":{"format":1,"resources":[{"typeUrl":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"x","value":"AAA="}]}}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`null`))
	dir := f.TempDir()
	d, err := OpenStateDir(dir)
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		snap, _, err := d.Load(node)
		if err == nil && snap == nil {
			t.Fatal("no error and no config for an existing file")
		}
		if errors.Is(err, os.ErrNotExist) {
			t.Fatal("file vanished")
		}
	})
}
