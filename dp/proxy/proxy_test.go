package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestInbound runs the inbound listener of a generated config in front of
// a local service: request/response, half-close, counters.
func TestInbound(t *testing.T) {
	svc := startBackend(t, "web")
	cfg := generated(t, fmt.Sprintf(`type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - {port: 18080, servicePort: %d, tags: {kuma.io/service: web}}`, svc.port))
	name := "inbound:127.0.0.1:18080"
	// The generated port may be taken on this machine: bind an ephemeral one.
	cfg.Listeners[name].Address = sockAddr("127.0.0.1", 0)
	p := newProxy(t, Options{})
	apply(t, p, cfg)

	l := mustListener(t, p, name)
	if l.Direction != DirectionInbound || l.Error != "" {
		t.Fatalf("listener %+v", l)
	}
	c := dialClient(t, l.Address)
	for i := range 3 {
		if got := c.mustAsk(fmt.Sprint("req", i)); got != fmt.Sprint("web:req", i) {
			t.Fatalf("got %q", got)
		}
	}
	// Half-close: the service sees EOF and still answers.
	c.c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(c.r)
	if err != nil || string(rest) != "eof:web\n" {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
	c.c.Close()
	eventually(t, 5*time.Second, "connection to end", func() bool { return mustListener(t, p, name).Active == 0 })
	l = mustListener(t, p, name)
	if l.Total != 1 || l.Failed != 0 || l.BytesIn != 15 || l.BytesOut != uint64(3*len("web:req0\n")+len("eof:web\n")) {
		t.Fatalf("counters %+v", l)
	}
	b, err := json.Marshal(p.Status())
	if err != nil || !strings.Contains(string(b), `"bytesIn":15`) || !strings.Contains(string(b), `"name":"localhost:`) {
		t.Fatalf("status JSON %s %v", b, err)
	}
}

// TestRoundRobin spreads new connections evenly over an EDS cluster.
func TestRoundRobin(t *testing.T) {
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	p := newProxy(t, Options{})
	apply(t, p, config(flat(outbound("out", "backend"), edsService("backend", b1, b2, b3))...))
	addr := mustListener(t, p, "out").Address
	counts := map[string]int{}
	for range 30 {
		got, err := askOnce(t, addr, "x")
		if err != nil {
			t.Fatal(err)
		}
		counts[strings.TrimSuffix(got, ":x")]++
	}
	if counts["b1"] != 10 || counts["b2"] != 10 || counts["b3"] != 10 {
		t.Fatalf("spread %v", counts)
	}
}

// countingDial counts dials per address.
type countingDial struct {
	mu    sync.Mutex
	dials map[string]int
	hang  map[string]bool // addresses whose connect never completes
}

func newCountingDial() *countingDial {
	return &countingDial{dials: map[string]int{}, hang: map[string]bool{}}
}

func (d *countingDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dials[addr]++
	hang := d.hang[addr]
	d.mu.Unlock()
	if hang {
		<-ctx.Done() // a blackholed SYN: only the connect timeout ends it
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *countingDial) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[addr]
}

// TestEjection: a refusing endpoint costs no request; it is tried once,
// ejected, and skipped while ejected. When every endpoint is ejected they
// are tried anyway (panic mode).
func TestEjection(t *testing.T) {
	b1, b2, dead := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "dead")
	dead.close()
	d := newCountingDial()
	p := newProxy(t, Options{Dial: d.dial, EjectionTime: time.Hour})
	apply(t, p, config(flat(outbound("out", "backend"), edsService("backend", b1, dead, b2))...))
	addr := mustListener(t, p, "out").Address
	counts := map[string]int{}
	for range 30 {
		got, err := askOnce(t, addr, "x")
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}
		counts[strings.TrimSuffix(got, ":x")]++
	}
	if counts["b1"]+counts["b2"] != 30 || counts["b1"] < 10 || counts["b2"] < 10 {
		t.Fatalf("spread %v", counts)
	}
	if n := d.count(dead.addr); n != 1 {
		t.Fatalf("dead endpoint dialled %d times, want once", n)
	}
	if l := mustListener(t, p, "out"); l.Failed != 0 || l.Total != 30 {
		t.Fatalf("listener %+v", l)
	}
	for _, e := range clusterStatus(p, "backend").Endpoints {
		if ejected := !e.EjectedUntil.IsZero(); ejected != (e.Address == dead.addr) {
			t.Fatalf("endpoint %+v ejected=%v", e, ejected)
		}
	}
	// The ejection survives a config update that keeps the endpoint.
	apply(t, p, config(flat(outbound("out", "backend"), edsService("backend", dead, b1))...))
	if e := clusterStatus(p, "backend").Endpoints[0]; e.Address != dead.addr || e.EjectedUntil.IsZero() {
		t.Fatalf("ejection lost: %+v", e)
	}

	// Every endpoint refusing: the connection fails, both are ejected.
	dead2 := startBackend(t, "dead2")
	dead2.close()
	apply(t, p, config(flat(outbound("out", "backend"), edsService("backend", dead, dead2))...))
	if got, err := askOnce(t, addr, "x"); err == nil {
		t.Fatalf("answer %q from dead endpoints", got)
	}
	eventually(t, 5*time.Second, "failure to be counted", func() bool { return mustListener(t, p, "out").ConnectFailed == 1 })
	for _, e := range clusterStatus(p, "backend").Endpoints {
		if e.EjectedUntil.IsZero() {
			t.Fatalf("not ejected: %+v", e)
		}
	}
	// One comes back: although ejected, it is tried (panic mode) and serves.
	startBackendAt(t, "back", dead2.addr)
	if got, err := askOnce(t, addr, "x"); err != nil || got != "back:x" {
		t.Fatalf("panic mode: %q %v", got, err)
	}
}

// TestConnectTimeout: an endpoint whose connect hangs is abandoned after
// the cluster's connect_timeout, ejected, and the next one serves.
func TestConnectTimeout(t *testing.T) {
	good := startBackend(t, "good")
	const blackhole = "127.0.0.1:1" // never dialled for real: the hook hangs
	d := newCountingDial()
	d.hang[blackhole] = true
	p := newProxy(t, Options{Dial: d.dial, EjectionTime: time.Hour})
	c := edsCluster("backend", 100*time.Millisecond)
	apply(t, p, config(outbound("out", "backend"), c, loadAssignment("backend", blackhole, good.addr)))
	addr := mustListener(t, p, "out").Address

	start := time.Now()
	got, err := askOnce(t, addr, "x")
	if err != nil || got != "good:x" {
		t.Fatalf("got %q %v", got, err)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 3*time.Second {
		t.Fatalf("first connection took %s, want about the 100ms connect timeout", took)
	}
	if e := clusterStatus(p, "backend").Endpoints[0]; e.Address != blackhole || e.EjectedUntil.IsZero() {
		t.Fatalf("blackhole not ejected: %+v", e)
	}
	for range 4 {
		if got, err := askOnce(t, addr, "x"); err != nil || got != "good:x" {
			t.Fatalf("got %q %v", got, err)
		}
	}
	if n := d.count(blackhole); n != 1 {
		t.Fatalf("blackhole dialled %d times", n)
	}

	// Only the blackhole: the downstream connection is closed after the timeout.
	apply(t, p, config(outbound("out", "backend"), c, loadAssignment("backend", blackhole)))
	start = time.Now()
	if got, err := askOnce(t, addr, "x"); err == nil {
		t.Fatalf("answer %q", got)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 3*time.Second {
		t.Fatalf("failure took %s", took)
	}
	eventually(t, 5*time.Second, "failure to be counted", func() bool {
		l := mustListener(t, p, "out")
		return l.ConnectFailed == 1 && l.Failed == 1
	})
}

// TestNoClusterNoEndpoint: a missing cluster, an EDS cluster with no load
// assignment yet, and a listener without filter close connections.
func TestNoClusterNoEndpoint(t *testing.T) {
	p := newProxy(t, Options{})
	empty := tcpListener("empty", 0, core.TrafficDirection_OUTBOUND, nil, "x")
	empty.FilterChains[0].Filters = nil
	apply(t, p, config(outbound("missing", "nowhere"), outbound("warming", "backend"), edsCluster("backend", time.Second), empty))
	for _, name := range []string{"missing", "warming", "empty"} {
		if got, err := askOnce(t, mustListener(t, p, name).Address, "x"); err == nil {
			t.Fatalf("%s: answer %q", name, got)
		}
	}
	eventually(t, 5*time.Second, "failures to be counted", func() bool {
		return mustListener(t, p, "missing").NoCluster == 1 && mustListener(t, p, "warming").NoEndpoint == 1 &&
			mustListener(t, p, "empty").NoCluster == 1
	})
	// The cluster appears: the same listener starts serving.
	b := startBackend(t, "b")
	apply(t, p, config(flat(outbound("missing", "nowhere"), edsService("nowhere", b))...))
	if got, err := askOnce(t, mustListener(t, p, "missing").Address, "x"); err != nil || got != "b:x" {
		t.Fatalf("got %q %v", got, err)
	}
}

// TestWeightedClusters splits connections 80/20.
func TestWeightedClusters(t *testing.T) {
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	p := newProxy(t, Options{})
	apply(t, p, config(flat(outbound("out", "", "backend-v1", 80, "backend-v2", 20),
		edsService("backend-v1", v1), edsService("backend-v2", v2))...))
	addr := mustListener(t, p, "out").Address
	counts := map[string]int{}
	for range 200 {
		got, err := askOnce(t, addr, "x")
		if err != nil {
			t.Fatal(err)
		}
		counts[strings.TrimSuffix(got, ":x")]++
	}
	// Smooth weighted round robin is exact over every 100 connections; the
	// bound is generous so that a switch to weighted random would pass too.
	if counts["v1"] < 140 || counts["v1"] > 180 || counts["v1"]+counts["v2"] != 200 {
		t.Fatalf("split %v, want about 160/40", counts)
	}
	t.Logf("split %v", counts)
}

// TestIdleTimeout closes a connection once no byte flowed for idle_timeout
// in either direction, and not before.
func TestIdleTimeout(t *testing.T) {
	b := startBackend(t, "b")
	const idle = 300 * time.Millisecond
	p := newProxy(t, Options{})
	apply(t, p, config(tcpListener("out", 0, core.TrafficDirection_OUTBOUND, durationpb.New(idle), "backend"),
		edsCluster("backend", time.Second), loadAssignment("backend", b.addr)))
	addr := mustListener(t, p, "out").Address

	// Traffic every idle/3 keeps the connection open past several idle periods.
	busy := dialClient(t, addr)
	start := time.Now()
	var lastActive time.Time
	for {
		if _, err := busy.ask("ping"); err != nil {
			t.Fatalf("busy connection closed after %s: %v", time.Since(start), err)
		}
		lastActive = time.Now()
		if lastActive.Sub(start) > 3*idle {
			break
		}
		time.Sleep(idle / 3) // pacing the traffic, not synchronisation
	}
	// Silence: closed after about idle.
	if _, err := busy.waitClosed(10 * idle); err != nil {
		t.Fatalf("idle connection not closed: %v", err)
	}
	if took := time.Since(lastActive); took < idle-20*time.Millisecond || took > 5*idle {
		t.Fatalf("closed %s after the last byte, idle timeout %s", took, idle)
	}

	// idle_timeout 0 disables it.
	apply(t, p, config(tcpListener("out", 0, core.TrafficDirection_OUTBOUND, durationpb.New(0), "backend"),
		edsCluster("backend", time.Second), loadAssignment("backend", b.addr)))
	quiet := dialClient(t, mustListener(t, p, "out").Address)
	quiet.mustAsk("x")
	quiet.c.SetReadDeadline(time.Now().Add(3 * idle))
	if _, err := quiet.r.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection without idle timeout: %v", err)
	}
	quiet.mustAsk("still open")
}

// TestConfigChange: new routing applies to new connections; established
// ones keep their upstream and are not disturbed.
func TestConfigChange(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := newProxy(t, Options{})
	apply(t, p, config(flat(outbound("out", "svc-a"), edsService("svc-a", a), edsService("svc-b", b))...))
	addr := mustListener(t, p, "out").Address
	old := dialClient(t, addr)
	if got := old.mustAsk("1"); got != "a:1" {
		t.Fatalf("got %q", got)
	}
	apply(t, p, config(flat(outbound("out", "svc-b"), edsService("svc-a", a), edsService("svc-b", b))...))
	if got := mustListener(t, p, "out").Address; got != addr {
		t.Fatalf("listener rebound: %s, was %s", got, addr)
	}
	if got, err := askOnce(t, addr, "2"); err != nil || got != "b:2" {
		t.Fatalf("new connection: %q %v", got, err)
	}
	if got := old.mustAsk("3"); got != "a:3" {
		t.Fatalf("established connection: %q", got)
	}
	// Same config again: nothing moves.
	cfg := config(flat(outbound("out", "svc-b"), edsService("svc-a", a), edsService("svc-b", b))...)
	apply(t, p, cfg)
	apply(t, p, cfg)
	eventually(t, 5*time.Second, "the second connection to end", func() bool { return mustListener(t, p, "out").Active == 1 })
	l := mustListener(t, p, "out")
	if l.Address != addr || l.Draining || l.Total != 2 || l.Active != 1 {
		t.Fatalf("listener %+v", l)
	}
	if got := old.mustAsk("4"); got != "a:4" {
		t.Fatalf("established connection: %q", got)
	}
	if n := len(p.Status().Listeners); n != 1 {
		t.Fatalf("%d listeners", n)
	}
}

// TestListenerRemoved: the port refuses new connections at once, the
// established one works until it ends, then the listener is gone.
func TestListenerRemoved(t *testing.T) {
	a := startBackend(t, "a")
	p := newProxy(t, Options{})
	apply(t, p, config(flat(outbound("out", "svc"), outbound("other", "svc"), edsService("svc", a))...))
	addr := mustListener(t, p, "out").Address
	c := dialClient(t, addr)
	c.mustAsk("1")

	apply(t, p, config(flat(outbound("other", "svc"), edsService("svc", a))...))
	if !refuses(addr) {
		t.Fatal("removed listener still accepts")
	}
	l, ok := listenerStatus(p, "out", true)
	if !ok || l.Active != 1 {
		t.Fatalf("draining listener %+v %v", l, ok)
	}
	if got := c.mustAsk("2"); got != "a:2" {
		t.Fatalf("draining connection: %q", got)
	}
	c.c.Close()
	eventually(t, 5*time.Second, "drained listener to disappear", func() bool {
		_, ok := listenerStatus(p, "out", true)
		return !ok
	})
	if n := len(p.Status().Listeners); n != 1 {
		t.Fatalf("listeners %+v", p.Status().Listeners)
	}
}

// TestAddressChange: a listener that moves binds its new address at once;
// the old socket drains like a removed listener.
func TestAddressChange(t *testing.T) {
	a := startBackend(t, "a")
	p := newProxy(t, Options{})
	l := outbound("out", "svc")
	apply(t, p, config(flat(l, edsService("svc", a))...))
	oldAddr := mustListener(t, p, "out").Address
	c := dialClient(t, oldAddr)
	c.mustAsk("1")

	l2 := outbound("out", "svc")
	l2.Address = sockAddr("127.0.0.2", 0)
	apply(t, p, config(flat(l2, edsService("svc", a))...))
	newAddr := mustListener(t, p, "out").Address
	if !strings.HasPrefix(newAddr, "127.0.0.2:") || !refuses(oldAddr) {
		t.Fatalf("moved to %s, old %s still accepting=%v", newAddr, oldAddr, !refuses(oldAddr))
	}
	if got, err := askOnce(t, newAddr, "2"); err != nil || got != "a:2" {
		t.Fatalf("new address: %q %v", got, err)
	}
	st := p.Status().Listeners
	if len(st) != 2 || st[0].Draining || !st[1].Draining || st[1].Address != oldAddr {
		t.Fatalf("listeners %+v", st)
	}
	c.mustAsk("3")
	c.c.Close()
	eventually(t, 5*time.Second, "old socket to drain", func() bool { return len(p.Status().Listeners) == 1 })
}

// TestDrainTime: connections still open when DrainTime ends are closed.
func TestDrainTime(t *testing.T) {
	a := startBackend(t, "a")
	p := newProxy(t, Options{DrainTime: 200 * time.Millisecond})
	apply(t, p, config(flat(outbound("out", "svc"), edsService("svc", a))...))
	c := dialClient(t, mustListener(t, p, "out").Address)
	c.mustAsk("1")
	removed := time.Now()
	apply(t, p, config(flat(edsService("svc", a))...))
	if _, err := c.waitClosed(5 * time.Second); err != nil {
		t.Fatalf("not closed: %v", err)
	}
	if took := time.Since(removed); took < 200*time.Millisecond || took > 3*time.Second {
		t.Fatalf("closed after %s, drain time 200ms", took)
	}
	eventually(t, 5*time.Second, "listener to go", func() bool { return len(p.Status().Listeners) == 0 })
}

// TestBindFailure: a listener that cannot bind is reported and retried;
// the others run.
func TestBindFailure(t *testing.T) {
	a := startBackend(t, "a")
	blocker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := blocker.Addr().String()
	_, port := hostPort(taken)
	cfg := config(flat(tcpListener("blocked", port, core.TrafficDirection_OUTBOUND, nil, "svc"), outbound("ok", "svc"), edsService("svc", a))...)
	p := newProxy(t, Options{})
	err = p.Apply(cfg)
	if err == nil || !strings.Contains(err.Error(), `listener "blocked"`) || !strings.Contains(err.Error(), taken) {
		t.Fatalf("apply: %v", err)
	}
	if l := mustListener(t, p, "blocked"); l.Error == "" || !strings.Contains(l.Error, taken) {
		t.Fatalf("status %+v", l)
	}
	if got, err := askOnce(t, mustListener(t, p, "ok").Address, "x"); err != nil || got != "a:x" {
		t.Fatalf("other listener: %q %v", got, err)
	}
	// Still taken: still failing.
	if err := p.Apply(cfg); err == nil {
		t.Fatal("second apply bound a taken port")
	}
	blocker.Close()
	if err := p.Apply(cfg); err != nil {
		t.Fatalf("retry: %v", err)
	}
	l := mustListener(t, p, "blocked")
	if l.Error != "" || l.Address != taken {
		t.Fatalf("after retry %+v", l)
	}
	if got, err := askOnce(t, taken, "y"); err != nil || got != "a:y" {
		t.Fatalf("retried listener: %q %v", got, err)
	}
}

// TestShutdownDrains: Shutdown stops accepting at once and returns when the
// last connection ends.
func TestShutdownDrains(t *testing.T) {
	a := startBackend(t, "a")
	p := New(Options{Logger: testLogger(t)})
	apply(t, p, config(flat(outbound("out", "svc"), edsService("svc", a))...))
	addr := mustListener(t, p, "out").Address
	c := dialClient(t, addr)
	c.mustAsk("1")
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	eventually(t, 5*time.Second, "port to refuse", func() bool { return refuses(addr) })
	if got := c.mustAsk("2"); got != "a:2" {
		t.Fatalf("got %q", got)
	}
	select {
	case err := <-done:
		t.Fatalf("shutdown returned with a connection open: %v", err)
	default:
	}
	c.c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not return")
	}
	if err := p.Apply(config()); !errors.Is(err, ErrClosed) {
		t.Fatalf("apply after shutdown: %v", err)
	}
}

// TestShutdownBounded: Shutdown closes what is left when ctx ends, or when
// DrainTime passes, and aborts connects in progress.
func TestShutdownBounded(t *testing.T) {
	a := startBackend(t, "a")
	for _, tc := range []struct {
		name    string
		drain   time.Duration
		ctx     time.Duration
		wantErr bool
	}{
		{"ctx", time.Hour, 200 * time.Millisecond, true},
		{"drain time", 200 * time.Millisecond, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const blackhole = "127.0.0.1:1"
			d := newCountingDial()
			d.hang[blackhole] = true
			p := New(Options{Logger: testLogger(t), DrainTime: tc.drain, Dial: d.dial})
			apply(t, p, config(flat(outbound("out", "svc"), edsService("svc", a),
				outbound("hang", "hole"), edsCluster("hole", time.Hour), loadAssignment("hole", blackhole))...))
			c := dialClient(t, mustListener(t, p, "out").Address)
			c.mustAsk("1")
			connecting := dialClient(t, mustListener(t, p, "hang").Address)
			eventually(t, 5*time.Second, "connect to start", func() bool { return d.count(blackhole) == 1 })

			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			err := p.Shutdown(ctx)
			if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
				t.Fatalf("shutdown took %s", took)
			}
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
				t.Fatalf("shutdown: %v", err)
			}
			for _, cl := range []*client{c, connecting} {
				if _, err := cl.waitClosed(time.Second); err != nil {
					t.Fatalf("connection left open: %v", err)
				}
			}
		})
	}
}

// TestConcurrentApply: traffic, Apply and Status at once (for -race).
func TestConcurrentApply(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := newProxy(t, Options{DrainTime: 50 * time.Millisecond})
	cfgs := []Config{
		config(flat(outbound("out", "svc"), edsService("svc", a, b), outbound("x", "svc"))...),
		config(flat(outbound("out", "", "svc", 1, "svc2", 3), edsService("svc", a), edsService("svc2", b))...),
	}
	apply(t, p, cfgs[0])
	addr := mustListener(t, p, "out").Address
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				got, err := askOnce(t, addr, "x")
				if err != nil || (got != "a:x" && got != "b:x") {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			b, _ := json.Marshal(p.Status())
			_ = b
		}
	}()
	for i := range 50 {
		if err := p.Apply(cfgs[i%2]); err != nil {
			t.Error(err)
		}
	}
	eventually(t, 10*time.Second, "some traffic", func() bool { return ok.Load() > 50 })
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed, %d succeeded", failed.Load(), ok.Load())
	}
}

// TestIdleTimeoutStalledPeer: bytes stuck because the upstream stopped
// reading count as idle too, although a copy is blocked writing.
func TestIdleTimeoutStalledPeer(t *testing.T) {
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := stalled.Accept()
		if err == nil {
			held <- c // never read: the proxy's writes block once buffers fill
		}
	}()
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	const idle = 300 * time.Millisecond
	p := newProxy(t, Options{})
	apply(t, p, config(tcpListener("out", 0, core.TrafficDirection_OUTBOUND, durationpb.New(idle), "svc"),
		edsCluster("svc", time.Second), loadAssignment("svc", stalled.Addr().String())))
	c := dialClient(t, mustListener(t, p, "out").Address)
	chunk := make([]byte, 64<<10)
	c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	var lastWrite time.Time
	for {
		if _, err := c.c.Write(chunk); err != nil {
			break // the proxy closed the connection
		}
		lastWrite = time.Now()
	}
	if took := time.Since(lastWrite); took < idle/2 || took > 10*time.Second {
		t.Fatalf("closed %s after the last write that went through, idle timeout %s", took, idle)
	}
	eventually(t, 5*time.Second, "connection to end", func() bool { return mustListener(t, p, "out").Active == 0 })
}

// TestAddressTakeover: a listener can take the address of one removed in
// the same Apply (old sockets close before new ones bind).
func TestAddressTakeover(t *testing.T) {
	a := startBackend(t, "a")
	p := newProxy(t, Options{})
	apply(t, p, config(flat(outbound("old", "svc"), edsService("svc", a))...))
	addr := mustListener(t, p, "old").Address
	_, port := hostPort(addr)
	apply(t, p, config(flat(tcpListener("new", port, core.TrafficDirection_OUTBOUND, nil, "svc"), edsService("svc", a))...))
	if l := mustListener(t, p, "new"); l.Error != "" || l.Address != addr {
		t.Fatalf("new listener %+v", l)
	}
	if got, err := askOnce(t, addr, "x"); err != nil || got != "a:x" {
		t.Fatalf("got %q %v", got, err)
	}
}

// TestLeastRequestChoiceCount: a LEAST_REQUEST cluster compares choice_count
// endpoints per connection: with as many choices as endpoints the idle one
// always wins; with Envoy's default of two, busy ones are picked too.
func TestLeastRequestChoiceCount(t *testing.T) {
	lr := func(choices *wrapperspb.UInt32Value) *clusterSpec {
		c := edsCluster("backend", time.Second)
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		if choices != nil {
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: choices}}
		}
		var addrs []string
		for i := range 10 {
			addrs = append(addrs, fmt.Sprintf("10.0.0.%d:80", i+1))
		}
		pl, err := compile(config(c, loadAssignment("backend", addrs...)))
		if err != nil {
			t.Fatal(err)
		}
		return pl.clusters["backend"]
	}
	busy := func(c *cluster) {
		for _, e := range c.endpoints[1:] {
			e.active.Store(1)
		}
	}
	now := time.Now()

	all := newCluster(lr(wrapperspb.UInt32(10)), nil)
	busy(all)
	for range 100 {
		if got := all.attempts(now)[0]; got != all.endpoints[0] {
			t.Fatalf("choice_count 10 of 10 endpoints picked the busy %s", got.addr)
		}
	}
	two := newCluster(lr(nil), nil)
	busy(two)
	if two.choices != defaultChoiceCount {
		t.Fatalf("choices %d without choice_count, want Envoy's %d", two.choices, defaultChoiceCount)
	}
	picked := false
	for range 100 { // two of ten miss the idle endpoint 81% of the time
		if two.attempts(now)[0] != two.endpoints[0] {
			picked = true
			break
		}
	}
	if !picked {
		t.Fatal("two choices among ten always found the one idle endpoint")
	}
}
