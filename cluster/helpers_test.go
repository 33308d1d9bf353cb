package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Opened by bbolt/http internals and closed asynchronously.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// memberlist's Shutdown does not wait for a probe of a peer that
		// stopped answering (a partition); the probe ends at its ack
		// timeout, which memberlist stretches up to 8x after failed probes.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

// testLogWriter sends logs to t.Log until the test ends.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	lvl := slog.LevelInfo
	if os.Getenv("CLUSTER_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	w := &testLogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1.
// freePort picks a port free for TCP and UDP on 127.0.0.1 below the kernel's
// default ephemeral range (32768+), so outgoing connections of other tests
// running at the same time never take it before the node binds it.
func freePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 500 {
		port := 10000 + rand.IntN(22000)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

type testNode struct {
	*Node
	name  string
	cfg   Config
	state *fsm.FSM
}

type nodeSpec struct {
	name   string
	dir    string
	raft   int
	gossip int
}

func newSpec(t testing.TB, name string) nodeSpec {
	return nodeSpec{name: name, dir: t.TempDir(), raft: freePort(t), gossip: freePort(t)}
}

func (s nodeSpec) gossipAddr() string { return "127.0.0.1:" + strconv.Itoa(s.gossip) }

func testConfig(t testing.TB, s nodeSpec, expect int, join []string) Config {
	cfg := DefaultConfig()
	cfg.Name = s.name
	cfg.DataDir = s.dir
	cfg.RaftAddr = "127.0.0.1:" + strconv.Itoa(s.raft)
	cfg.GossipAddr = s.gossipAddr()
	cfg.AdvertiseHost = "127.0.0.1"
	cfg.APIAddr = "127.0.0.1:5681"
	cfg.XDSAddr = "127.0.0.1:5678"
	cfg.Join = join
	cfg.BootstrapExpect = expect
	cfg.Version = "test"
	cfg.ServerStabilizationTime = 500 * time.Millisecond
	cfg.Logger = testLogger(t)
	return cfg
}

// startNode creates and starts a node; it is closed at the end of the test.
func startNode(t testing.TB, cfg Config, hooks ...func(*Node)) *testNode {
	t.Helper()
	st := fsm.New(fsm.Options{Logger: cfg.Logger, OnFatal: func(err error) { t.Errorf("fsm fatal: %v", err) }})
	n, err := New(cfg, st)
	if err != nil {
		t.Fatalf("new %s: %v", cfg.Name, err)
	}
	for _, h := range hooks {
		h(n)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	return &testNode{Node: n, name: cfg.Name, cfg: cfg, state: st}
}

// startCluster starts n replicas at once, each joining all others.
func startCluster(t testing.TB, count int, hooks ...func(*Node)) []*testNode {
	t.Helper()
	specs := make([]nodeSpec, count)
	for i := range specs {
		specs[i] = newSpec(t, fmt.Sprintf("cp-%d", i+1))
	}
	nodes := make([]*testNode, count)
	var wg sync.WaitGroup
	for i, s := range specs {
		var join []string
		for j, o := range specs {
			if j != i {
				join = append(join, o.gossipAddr())
			}
		}
		cfg := testConfig(t, s, count, join)
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = startNode(t, cfg, hooks...)
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		if n == nil {
			t.FailNow()
		}
	}
	return nodes
}

// eventually polls cond until it returns "" or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within %s: %s", what, within, last)
}

// waitLeader waits for exactly one leader among the open nodes, known to all.
func waitLeader(t testing.TB, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	eventually(t, 15*time.Second, "single leader", func() string {
		leader = nil
		count := 0
		for _, n := range nodes {
			if n.closing.Load() {
				continue
			}
			if n.IsLeader() {
				leader = n
				count++
			}
		}
		if count != 1 {
			return fmt.Sprintf("%d leaders", count)
		}
		for _, n := range nodes {
			if n.closing.Load() {
				continue
			}
			if _, id := n.raft.LeaderWithID(); string(id) != leader.name {
				return fmt.Sprintf("%s sees leader %q, want %q", n.name, id, leader.name)
			}
		}
		return ""
	})
	return leader
}

func voters(t testing.TB, n *testNode) map[string]string {
	t.Helper()
	cfg, err := n.configuration()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range cfg.Servers {
		out[string(s.ID)] = suffrageName(s.Suffrage)
	}
	return out
}

func meshPut(t testing.TB, name string) fsm.Command {
	t.Helper()
	r, err := resource.Decode([]byte(`{"type":"Mesh","name":"`+name+`"}`), resource.JSON)
	if err != nil {
		t.Fatal(err)
	}
	resource.Default(r)
	return fsm.Command{Type: fsm.CmdPut, Put: &fsm.PutCommand{Resource: r}}
}

func hasMesh(n *testNode, name string) bool {
	_, ok := n.state.Get(resource.Key{Type: resource.TypeMesh, Name: name})
	return ok
}

func followers(nodes []*testNode, leader *testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != leader && !n.closing.Load() {
			out = append(out, n)
		}
	}
	return out
}

var _ = io.Discard
