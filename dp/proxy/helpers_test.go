package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// newProxy starts a proxy that is shut down (and checked for leaked
// goroutines) when the test ends.
func newProxy(t *testing.T, opts Options) *Proxy {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	p := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return p
}

func apply(t *testing.T, p *Proxy, cfg Config) {
	t.Helper()
	if err := p.Apply(cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// backend is an upstream service on 127.0.0.1: it answers every line with
// "{name}:{line}" and, when the client half-closes, with "eof:{name}" before
// closing.
type backend struct {
	name string
	ln   net.Listener
	addr string
	port uint32
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]struct{}
	done bool
}

func startBackend(t testing.TB, name string) *backend {
	t.Helper()
	return startBackendAt(t, name, "127.0.0.1:0")
}

func startBackendAt(t testing.TB, name, addr string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln, addr: ln.Addr().String(), conn: map[net.Conn]struct{}{}}
	b.port = uint32(ln.Addr().(*net.TCPAddr).Port)
	b.wg.Add(1)
	go b.run()
	t.Cleanup(b.close)
	return b
}

func (b *backend) run() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.done {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conn[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go b.serve(c)
	}
}

func (b *backend) serve(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conn, c)
		b.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				fmt.Fprintf(c, "eof:%s\n", b.name)
			}
			return
		}
		if _, err := fmt.Fprintf(c, "%s:%s", b.name, line); err != nil {
			return
		}
	}
}

// close stops the backend: its port refuses connections from now on.
func (b *backend) close() {
	b.mu.Lock()
	b.done = true
	for c := range b.conn {
		c.Close()
	}
	b.mu.Unlock()
	b.ln.Close()
	b.wg.Wait()
}

// client is one downstream connection speaking the backend's line protocol.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// ask sends one line and returns the answer without its newline.
func (c *client) ask(line string) (string, error) {
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c.c, "%s\n", line); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func (c *client) mustAsk(line string) string {
	c.t.Helper()
	got, err := c.ask(line)
	if err != nil {
		c.t.Fatalf("ask %q: %v", line, err)
	}
	return got
}

// waitClosed waits until the peer closes the connection and returns how
// long that took.
func (c *client) waitClosed(within time.Duration) (time.Duration, error) {
	start := time.Now()
	c.c.SetReadDeadline(start.Add(within))
	_, err := io.Copy(io.Discard, c.r)
	if err != nil {
		return time.Since(start), err
	}
	return time.Since(start), nil
}

// askOnce opens a connection, sends one line and returns the answer.
func askOnce(t *testing.T, addr, line string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	return cl.ask(line)
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func listenerStatus(p *Proxy, name string, draining bool) (ListenerStatus, bool) {
	for _, l := range p.Status().Listeners {
		if l.Name == name && l.Draining == draining {
			return l, true
		}
	}
	return ListenerStatus{}, false
}

func mustListener(t *testing.T, p *Proxy, name string) ListenerStatus {
	t.Helper()
	l, ok := listenerStatus(p, name, false)
	if !ok {
		t.Fatalf("no listener %q in %+v", name, p.Status().Listeners)
	}
	return l
}

func clusterStatus(p *Proxy, name string) ClusterStatus {
	for _, c := range p.Status().Clusters {
		if c.Name == name {
			return c
		}
	}
	return ClusterStatus{}
}

// refuses reports whether nothing listens on addr.
func refuses(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// Config builders, in the shapes xds/envoy generates.

func sockAddr(ip string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: ip, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}}
}

func hostPort(addr string) (string, uint32) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	n, _ := strconv.Atoi(p)
	return h, uint32(n)
}

// tcpListener is a listener on 127.0.0.1 (port 0: ephemeral) with a
// tcp_proxy to cluster, or to weighted clusters given as name, weight, ...
func tcpListener(name string, port uint32, dir core.TrafficDirection, idle *durationpb.Duration, cluster string, weighted ...any) *listenerv3.Listener {
	tcp := &tcpv3.TcpProxy{StatPrefix: name, IdleTimeout: idle}
	if len(weighted) == 0 {
		tcp.ClusterSpecifier = &tcpv3.TcpProxy_Cluster{Cluster: cluster}
	} else {
		wc := &tcpv3.TcpProxy_WeightedCluster{}
		for i := 0; i < len(weighted); i += 2 {
			wc.Clusters = append(wc.Clusters, &tcpv3.TcpProxy_WeightedCluster_ClusterWeight{
				Name: weighted[i].(string), Weight: uint32(weighted[i+1].(int))})
		}
		tcp.ClusterSpecifier = &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	cfg, err := anypb.New(tcp)
	if err != nil {
		panic(err)
	}
	return &listenerv3.Listener{
		Name: name, Address: sockAddr("127.0.0.1", port), TrafficDirection: dir,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: tcpProxyFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg}}}}},
		BindToPort: wrapperspb.Bool(true),
	}
}

func outbound(name, cluster string, weighted ...any) *listenerv3.Listener {
	return tcpListener(name, 0, core.TrafficDirection_OUTBOUND, nil, cluster, weighted...)
}

func edsCluster(name string, connectTimeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &core.ConfigSource{
			ResourceApiVersion:    core.ApiVersion_V3,
			ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		}},
		ConnectTimeout: durationpb.New(connectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
}

func loadAssignment(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		h, p := hostPort(a)
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: sockAddr(h, p)}}})
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(eps) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}
	}
	return cla
}

// config assembles a Config from listeners, clusters and load assignments.
func config(items ...any) Config {
	cfg := Config{
		Listeners: map[string]*listenerv3.Listener{},
		Clusters:  map[string]*clusterv3.Cluster{},
		Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
	}
	for _, it := range items {
		switch v := it.(type) {
		case *listenerv3.Listener:
			cfg.Listeners[v.GetName()] = v
		case *clusterv3.Cluster:
			cfg.Clusters[v.GetName()] = v
		case *endpointv3.ClusterLoadAssignment:
			cfg.Endpoints[v.GetClusterName()] = v
		default:
			panic(fmt.Sprintf("config: %T", it))
		}
	}
	return cfg
}

// edsService is an EDS cluster and its load assignment over backends.
func edsService(name string, bs ...*backend) []any {
	var addrs []string
	for _, b := range bs {
		addrs = append(addrs, b.addr)
	}
	return []any{edsCluster(name, time.Second), loadAssignment(name, addrs...)}
}

func flat(items ...any) []any {
	var out []any
	for _, it := range items {
		if s, ok := it.([]any); ok {
			out = append(out, s...)
		} else {
			out = append(out, it)
		}
	}
	return out
}
