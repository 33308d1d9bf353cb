package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
	"github.com/kuma-ha/kuma-ha/xds"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memTarget is a cluster in the test process: xds.Servers over FSMs fed by
// one fake log (no Raft, no REST API).
type memTarget struct {
	mu    sync.Mutex
	idx   uint64
	fsms  []*fsm.FSM
	addrs []string
}

func (m *memTarget) apply(cmd fsm.Command) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd.Time = time.Now().UTC()
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	m.idx++
	var res *fsm.Result
	for _, f := range m.fsms {
		res = f.Apply(m.idx, data)
	}
	return res.Err
}

func (m *memTarget) XDSAddrs() []string { return m.addrs }

func (m *memTarget) Put(_ context.Context, _ int, _ string, doc []byte) error {
	r, err := resource.Decode(doc, resource.JSON)
	if err != nil {
		return err
	}
	resource.Default(r)
	return m.apply(fsm.Command{Type: fsm.CmdPut, Put: &fsm.PutCommand{Resource: r}})
}

func (m *memTarget) Delete(_ context.Context, _ int, name string) error {
	err := m.apply(fsm.Command{Type: fsm.CmdDelete, Delete: &fsm.DeleteCommand{Key: resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: name}}})
	if errors.Is(err, fsm.ErrNotFound) {
		return nil
	}
	return err
}

func (m *memTarget) Usage(context.Context) ([]usage, error) {
	var out []usage
	for i := range m.addrs {
		out = append(out, usage{Name: fmt.Sprintf("cp-%d", i+1)})
	}
	return out, nil
}

// fakeNode is what xds.Server needs of one replica.
type fakeNode struct {
	m    *memTarget
	name string
	ctx  context.Context
	wg   sync.WaitGroup
}

func (n *fakeNode) Apply(_ context.Context, cmd fsm.Command) (*fsm.Result, error) {
	err := n.m.apply(cmd)
	return &fsm.Result{Err: err}, nil
}
func (n *fakeNode) Members() []xds.Member {
	var out []xds.Member
	for i, a := range n.m.addrs {
		out = append(out, xds.Member{Name: fmt.Sprintf("cp-%d", i+1), XDSAddr: a, Alive: true})
	}
	return out
}
func (n *fakeNode) Name() string               { return n.name }
func (n *fakeNode) Instance() string           { return n.name }
func (n *fakeNode) Ready() (bool, string)      { return true, "" }
func (n *fakeNode) ServeLocal() (bool, string) { return n.Ready() }
func (n *fakeNode) RunWhileLeader(_ string, fn func(context.Context)) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); fn(n.ctx) }()
}

func newMemTarget(t *testing.T, replicas int) *memTarget {
	t.Helper()
	m := &memTarget{}
	var ls []net.Listener
	for range replicas {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		m.addrs = append(m.addrs, l.Addr().String())
		m.fsms = append(m.fsms, fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)}))
	}
	if err := m.apply(fsm.Command{Type: fsm.CmdEnsureDefaultMesh}); err != nil {
		t.Fatal(err)
	}
	for i := range replicas {
		ctx, cancel := context.WithCancel(context.Background())
		n := &fakeNode{m: m, name: fmt.Sprintf("cp-%d", i+1), ctx: ctx}
		srv, err := xds.New(xds.Options{State: m.fsms[i], Cluster: n, Logger: slog.New(slog.DiscardHandler), RebalanceRate: -1})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ls[i]) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			n.wg.Wait()
		})
	}
	return m
}

func testOptions(t *testing.T, proxies int) loadOptions {
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	return loadOptions{Proxies: proxies, Changes: 6, StreamsPerConn: 4, Backends: 3, Services: 5, Concurrency: 4,
		Timeout: 10 * time.Second, SetupTimeout: 30 * time.Second, Log: log, ClientLog: log}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestLoad runs the load logic against three in-process replicas.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts in-process xDS servers and 20 clients")
	}
	for _, tc := range []struct {
		name            string
		delta, register bool
	}{{"sotw", false, false}, {"delta", true, false}, {"register", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemTarget(t, 3)
			o := testOptions(t, 20)
			o.Delta, o.Register = tc.delta, tc.register
			res, err := runLevel(context.Background(), m, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Missing != 0 || len(res.FromAck) != 20*6 || len(res.Writes) != 6 || res.NACKs != 0 {
				t.Fatalf("missing %d, samples %d, writes %d, NACKs %d", res.Missing, len(res.FromAck), len(res.Writes), res.NACKs)
			}
			if p := percentile(res.FromAck, 100); p > 5*time.Second {
				t.Fatalf("max propagation %s", p)
			}
			t.Log(summary(res))
			md := section("kuma-xds-load --proxies 20", time.Now(), machine{CPU: "test"}, o, true, []*levelResult{res})
			if !strings.Contains(md, "| 20 | 3 | 6 |") {
				t.Fatalf("section:\n%s", md)
			}
			if err := cleanup(context.Background(), m, o); err != nil {
				t.Fatal(err)
			}
			if n := len(m.fsms[0].List(resource.TypeDataplane, "default")); n != 0 {
				t.Fatalf("%d Dataplanes left after cleanup", n)
			}
		})
	}
}

// TestNotConverged: a proxy that cannot get a change is reported, not waited for forever.
func TestNotConverged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts in-process xDS servers")
	}
	m := newMemTarget(t, 1)
	o := testOptions(t, 3)
	o.Changes, o.Timeout = 1, 300*time.Millisecond
	// The moving backend's address clashes with nothing, but a Put that
	// lands in another mesh never reaches the proxies.
	wrong := &wrongMesh{memTarget: m}
	res, err := runLevel(context.Background(), wrong, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Missing != 3 || len(res.NotConverged) != 3 {
		t.Fatalf("missing %d, not converged %v", res.Missing, res.NotConverged)
	}
}

// wrongMesh puts the changes (backend-moving-*) where no proxy looks.
type wrongMesh struct{ *memTarget }

func (w *wrongMesh) Put(ctx context.Context, i int, name string, doc []byte) error {
	if strings.HasPrefix(name, "backend-moving") {
		doc = bytes.ReplaceAll(doc, []byte(`"kuma.io/service":"backend"`), []byte(`"kuma.io/service":"elsewhere"`))
	}
	return w.memTarget.Put(ctx, i, name, doc)
}

func TestParseArgs(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "kuma-cp"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxies", "0"}, "--proxies"},
		{[]string{"--proxies", "10,x"}, "--proxies"},
		{[]string{"--changes", "0"}, "--changes"},
		{[]string{"--streams-per-conn", "0"}, "--streams-per-conn"},
		{[]string{"--api", "127.0.0.1:5681"}, "--api"},
		{[]string{"--bin-dir", filepath.Join(bin, "nope")}, "--bin-dir"},
		{[]string{"--timeout", "-1s"}, "--timeout"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, err := parseArgs(append([]string{"kuma-xds-load", "--bin-dir", bin}, tc.args...), &bytes.Buffer{})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error naming %s", tc.args, err, tc.want)
		}
	}
	cfg, err := parseArgs([]string{"kuma-xds-load", "--api", "http://127.0.0.1:5681/,http://127.0.0.1:5682", "--proxies", "100, 1000", "--delta"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.apiURLs) != 2 || cfg.apiURLs[0] != "http://127.0.0.1:5681" || len(cfg.proxies) != 2 || !cfg.load.Delta {
		t.Fatalf("%+v", cfg)
	}
}

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nkept"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"## one\n", "## two\n"} {
		if err := writeSection(path, "sotw 100", body); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeSection(path, "delta 100", "## delta\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# Benchmarks\n\nkept\n\n<!-- kuma-xds-load:begin sotw 100 -->\n## two\n<!-- kuma-xds-load:end sotw 100 -->\n\n" +
		"<!-- kuma-xds-load:begin delta 100 -->\n## delta\n<!-- kuma-xds-load:end delta 100 -->\n"
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte("# HELP x\nprocess_resident_memory_bytes 1.2e+08\nprocess_cpu_seconds_total 3.5\nkuma_x{a=\"b\"} 4\nkuma_xds_proxies 7\n"))
	if m["process_resident_memory_bytes"] != 1.2e8 || m["process_cpu_seconds_total"] != 3.5 || m["kuma_xds_proxies"] != 7 || len(m) != 3 {
		t.Fatalf("%v", m)
	}
}

func TestPercentile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if percentile(d, 50) != 5 || percentile(d, 99) != 10 || percentile(d, 100) != 10 || percentile(nil, 50) != 0 {
		t.Fatal(percentile(d, 50), percentile(d, 99))
	}
}

func TestRetry(t *testing.T) {
	calls := 0
	n, err := retry(context.Background(), time.Second, func(a int) error {
		if calls++; a < 2 {
			return fmt.Errorf("%w: no quorum", errUnavailable)
		}
		return nil
	})
	if n != 2 || err != nil || calls != 3 {
		t.Fatalf("retried %d, %v, %d calls", n, err, calls)
	}
	bad := errors.New("400")
	if n, err := retry(context.Background(), time.Second, func(int) error { return bad }); n != 0 || err != bad {
		t.Fatalf("final error retried: %d %v", n, err)
	}
	n, err = retry(context.Background(), 100*time.Millisecond, func(int) error { return errUnavailable })
	if !errors.Is(err, errUnavailable) || n < 1 {
		t.Fatalf("gave up after %d: %v", n, err)
	}
}
