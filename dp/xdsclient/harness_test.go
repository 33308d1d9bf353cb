package xdsclient

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
	"github.com/kuma-ha/kuma-ha/xds"
)

// fakeLog is a replicated log without Raft: every command is encoded once
// and applied, with the same increasing index, to every replica's FSM.
type fakeLog struct {
	mu   sync.Mutex
	idx  uint64
	fsms []*fsm.FSM
}

func (l *fakeLog) apply(cmd fsm.Command) (*fsm.Result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cmd.Time = time.Now().UTC()
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	l.idx++
	var res *fsm.Result
	for _, f := range l.fsms {
		res = f.Apply(l.idx, data)
	}
	return res, nil
}

// fakeCluster is one replica of the fake cluster, as xds.Server sees it.
type fakeCluster struct {
	log     *fakeLog
	name    string
	addr    string
	members func() []xds.Member
	ctx     context.Context
	wg      sync.WaitGroup
}

func (c *fakeCluster) Apply(_ context.Context, cmd fsm.Command) (*fsm.Result, error) {
	return c.log.apply(cmd)
}
func (c *fakeCluster) Members() []xds.Member      { return c.members() }
func (c *fakeCluster) Name() string               { return c.name }
func (c *fakeCluster) Instance() string           { return c.name + "-i" }
func (c *fakeCluster) Ready() (bool, string)      { return true, "" }
func (c *fakeCluster) ServeLocal() (bool, string) { return c.Ready() }
func (c *fakeCluster) RunWhileLeader(_ string, fn func(context.Context)) {
	c.wg.Add(1)
	go func() { defer c.wg.Done(); fn(c.ctx) }()
}

// replica is one in-process xds.Server.
type replica struct {
	name   string
	addr   string
	state  *fsm.FSM
	srv    *xds.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the server abruptly (streams break without a hint).
func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// testCluster is n replicas serving xDS from the same fake log.
type testCluster struct {
	t        *testing.T
	log      *fakeLog
	replicas []*replica
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, log: &fakeLog{}}
	var listeners []net.Listener
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l)
		tc.log.fsms = append(tc.log.fsms, fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)}))
		tc.replicas = append(tc.replicas, &replica{name: fmt.Sprintf("cp-%d", i+1), addr: l.Addr().String(), state: tc.log.fsms[i]})
	}
	if _, err := tc.log.apply(fsm.Command{Type: fsm.CmdEnsureDefaultMesh}); err != nil {
		t.Fatal(err)
	}
	members := func() []xds.Member {
		var out []xds.Member
		for _, r := range tc.replicas {
			out = append(out, xds.Member{Name: r.name, Instance: r.name + "-i", XDSAddr: r.addr, Alive: true})
		}
		return out
	}
	for i, r := range tc.replicas {
		ctx, cancel := context.WithCancel(context.Background())
		fc := &fakeCluster{log: tc.log, name: r.name, addr: r.addr, members: members, ctx: ctx}
		srv, err := xds.New(xds.Options{State: r.state, Cluster: fc, Logger: slog.New(slog.DiscardHandler),
			InsightFlush: 40 * time.Millisecond, RebalanceRate: -1})
		if err != nil {
			t.Fatal(err)
		}
		r.srv, r.cancel, r.done = srv, cancel, make(chan struct{})
		go func() {
			defer close(r.done)
			if err := srv.Serve(ctx, listeners[i]); err != nil {
				t.Errorf("Serve %s: %v", r.name, err)
			}
			cancel()
			fc.wg.Wait()
		}()
	}
	t.Cleanup(func() {
		for _, r := range tc.replicas {
			r.stop()
		}
	})
	return tc
}

func (tc *testCluster) put(doc string) *resource.Resource {
	tc.t.Helper()
	r, err := resource.Decode([]byte(doc), resource.JSON)
	if err != nil {
		tc.t.Fatal(err)
	}
	resource.Default(r)
	res, err := tc.log.apply(fsm.Command{Type: fsm.CmdPut, Put: &fsm.PutCommand{Resource: r}})
	if err != nil || res.Err != nil {
		tc.t.Fatalf("put: %v %v", err, res.Err)
	}
	return res.Resource
}

func (tc *testCluster) delete(name string) {
	tc.t.Helper()
	res, err := tc.log.apply(fsm.Command{Type: fsm.CmdDelete, Delete: &fsm.DeleteCommand{
		Key: resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: name}}})
	if err != nil || res.Err != nil {
		tc.t.Fatalf("delete: %v %v", err, res.Err)
	}
}

func (tc *testCluster) addrs() []string {
	var out []string
	for _, r := range tc.replicas {
		out = append(out, r.addr)
	}
	return out
}

func dpDoc(name, addr, svc string, outbound ...string) string {
	var outs []string
	for i, o := range outbound {
		outs = append(outs, fmt.Sprintf(`{"port":%d,"tags":{"kuma.io/service":%q}}`, 10001+i, o))
	}
	return fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":%q,`+
		`"inbound":[{"port":8080,"servicePort":80,"tags":{"kuma.io/service":%q}}],"outbound":[%s]}}`,
		name, addr, svc, strings.Join(outs, ","))
}

// runClient starts c.Run and stops it at the end of the test.
func runClient(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// endpoints returns the sorted "ip:port" of a snapshot's load assignment.
func endpoints(s *Snapshot, cluster string) []string {
	var out []string
	for _, le := range s.Endpoints[cluster].GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEndpoints waits until the client's load assignment for cluster is want.
func waitEndpoints(t *testing.T, c *Client, cluster string, want ...string) *Snapshot {
	t.Helper()
	slices.Sort(want)
	waitFor(t, fmt.Sprintf("endpoints of %s = %v", cluster, want), func() bool {
		return slices.Equal(endpoints(c.Snapshot(), cluster), want)
	})
	return c.Snapshot()
}
