package cluster

// The in-memory harness: whole clusters in one process. Every replica is a
// real Node (Raft, forwarding RPC, gossip, leader loop, autopilot); only the
// outside world is replaced (env.go): Raft runs over raft's InmemTransport,
// the Raft+RPC port is an in-memory listener dialled through net.Pipe,
// gossip runs over an in-memory memberlist transport, and the stores are
// raft's InmemStore and InmemSnapshotStore (kept across a restart, like a
// data dir). A partition cuts all three. Timeouts are short, so elections,
// partitions and failovers take milliseconds.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/kuma-ha/kuma-ha/fsm"
)

// memNet is the network of one test.
type memNet struct {
	mu        sync.Mutex
	listeners map[string]*memListener         // by Raft+RPC address
	raft      map[string]*raft.InmemTransport // the current transport of each Raft address
	gossip    map[string]*memGossip           // by gossip address
	hostOf    map[string]string               // any address -> its host
	cut       map[[2]string]bool              // host pairs that cannot talk (sorted)
	conns     map[[2]string][]net.Conn        // open pipes per host pair, closed on a cut
	disks     map[string]*stores              // by data dir
}

func newMemNet() *memNet {
	return &memNet{
		listeners: map[string]*memListener{},
		raft:      map[string]*raft.InmemTransport{},
		gossip:    map[string]*memGossip{},
		hostOf:    map[string]string{},
		cut:       map[[2]string]bool{},
		conns:     map[[2]string][]net.Conn{},
		disks:     map[string]*stores{},
	}
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// env is the world of the replica on host.
func (m *memNet) env(host string) *env {
	return &env{
		listen: func(addr string) (net.Listener, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, ok := m.listeners[addr]; ok {
				return nil, fmt.Errorf("listen %s: address in use", addr)
			}
			tcp, err := net.ResolveTCPAddr("tcp", addr)
			if err != nil {
				return nil, err
			}
			l := &memListener{chanListener: newChanListener(tcp, nil), net: m, key: addr}
			m.listeners[addr] = l
			m.hostOf[addr] = host
			return l, nil
		},
		dial: func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
			return m.dial(ctx, host, addr, timeout)
		},
		raftTransport: func(addr string) raft.Transport {
			_, tr := raft.NewInmemTransportWithTimeout(raft.ServerAddress(addr), 200*time.Millisecond)
			m.mu.Lock()
			defer m.mu.Unlock()
			m.raft[addr] = tr
			m.hostOf[addr] = host
			for other, ot := range m.raft {
				if other != addr && !m.cut[pair(host, m.hostOf[other])] {
					tr.Connect(raft.ServerAddress(other), ot)
					ot.Connect(raft.ServerAddress(addr), tr)
				}
			}
			return tr
		},
		gossipTransport: func() memberlist.Transport {
			return m.newGossip(host)
		},
		openStores: func(dir string, _ hclog.Logger) (*stores, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if d, ok := m.disks[dir]; ok {
				return d, nil
			}
			st := raft.NewInmemStore()
			d := &stores{log: st, stable: st, snaps: raft.NewInmemSnapshotStore(), close: func() error { return nil }}
			m.disks[dir] = d
			return d, nil
		},
	}
}

// refused is how a dial fails: nothing was sent.
func refused(addr, why string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{}, Err: fmt.Errorf("%s: %s", addr, why)}
}

func (m *memNet) dial(ctx context.Context, from, addr string, timeout time.Duration) (net.Conn, error) {
	m.mu.Lock()
	l, ok := m.listeners[addr]
	if !ok {
		m.mu.Unlock()
		return nil, refused(addr, "connection refused")
	}
	p := pair(from, m.hostOf[addr])
	if m.cut[p] {
		m.mu.Unlock()
		return nil, refused(addr, "network unreachable (partition)")
	}
	client, server := net.Pipe()
	m.conns[p] = append(m.conns[p], client, server)
	m.mu.Unlock()
	if timeout <= 0 {
		timeout = time.Second
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l.connCh <- server:
		return client, nil
	case <-l.closed:
	case <-ctx.Done():
	case <-t.C:
	}
	_ = client.Close()
	_ = server.Close()
	return nil, refused(addr, "connection refused")
}

// partition cuts every host of a from every host of b (Raft, RPC, gossip),
// closing the connections open between them.
func (m *memNet) partition(a, b []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			p := pair(x, y)
			m.cut[p] = true
			for _, c := range m.conns[p] {
				_ = c.Close()
			}
			delete(m.conns, p)
		}
	}
	for addr, tr := range m.raft {
		for other := range m.raft {
			if m.cut[pair(m.hostOf[addr], m.hostOf[other])] {
				tr.Disconnect(raft.ServerAddress(other))
			}
		}
	}
}

// cutRaft stops Raft messages from host a to host b only (the RPC and
// gossip still work), until heal.
func (m *memNet) cutRaft(a, b string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for addr, tr := range m.raft {
		if m.hostOf[addr] != a {
			continue
		}
		for other := range m.raft {
			if m.hostOf[other] == b {
				tr.Disconnect(raft.ServerAddress(other))
			}
		}
	}
}

// heal removes every cut.
func (m *memNet) heal() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cut = map[[2]string]bool{}
	for addr, tr := range m.raft {
		for other, ot := range m.raft {
			if other != addr {
				tr.Connect(raft.ServerAddress(other), ot)
			}
		}
	}
}

// memListener is a replica's Raft+RPC port: the mux's chanListener, fed by
// memNet.dial, that leaves the network when it closes.
type memListener struct {
	*chanListener
	net  *memNet
	key  string
	once sync.Once
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		_ = l.chanListener.Close()
		l.net.mu.Lock()
		if l.net.listeners[l.key] == l {
			delete(l.net.listeners, l.key)
		}
		l.net.mu.Unlock()
	})
	return nil
}

// memGossip is a memberlist transport: packets are delivered or dropped
// (never blocking, like UDP), streams are pipes.
type memGossip struct {
	net      *memNet
	host     string
	addr     string
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	once     sync.Once
}

var _ memberlist.Transport = (*memGossip)(nil)

func (m *memNet) newGossip(host string) *memGossip {
	g := &memGossip{net: m, host: host, addr: net.JoinHostPort(host, "7946"),
		packetCh: make(chan *memberlist.Packet, 64), streamCh: make(chan net.Conn), done: make(chan struct{})}
	m.mu.Lock()
	m.gossip[g.addr] = g
	m.hostOf[g.addr] = host
	m.mu.Unlock()
	return g
}

func (g *memGossip) peer(addr string) (*memGossip, error) {
	g.net.mu.Lock()
	defer g.net.mu.Unlock()
	p, ok := g.net.gossip[addr]
	if !ok || g.net.cut[pair(g.host, p.host)] {
		return nil, fmt.Errorf("no route to %s", addr)
	}
	return p, nil
}

func (g *memGossip) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.ParseIP(g.host), 7946, nil
}

func (g *memGossip) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	p, err := g.peer(addr)
	if err != nil {
		return now, nil // lost, like a datagram
	}
	select {
	case p.packetCh <- &memberlist.Packet{Buf: slices.Clone(b), From: &net.UDPAddr{IP: net.ParseIP(g.host), Port: 7946}, Timestamp: now}:
	case <-p.done:
	default:
	}
	return now, nil
}

func (g *memGossip) PacketCh() <-chan *memberlist.Packet { return g.packetCh }

func (g *memGossip) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	p, err := g.peer(addr)
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case p.streamCh <- a:
		return b, nil
	case <-p.done:
	case <-t.C:
	}
	_ = a.Close()
	_ = b.Close()
	return nil, fmt.Errorf("dial %s: refused", addr)
}

func (g *memGossip) StreamCh() <-chan net.Conn { return g.streamCh }

func (g *memGossip) Shutdown() error {
	g.once.Do(func() {
		close(g.done)
		g.net.mu.Lock()
		if g.net.gossip[g.addr] == g {
			delete(g.net.gossip, g.addr)
		}
		g.net.mu.Unlock()
	})
	return nil
}

// gatedSM lets a test stop a replica's state machine at an exact entry.
type gatedSM struct {
	StateMachine
	mu   sync.Mutex
	gate func(index uint64, data []byte)
}

func (g *gatedSM) Apply(index uint64, data []byte) *fsm.Result {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		gate(index, data)
	}
	return g.StateMachine.Apply(index, data)
}

func (g *gatedSM) setGate(f func(index uint64, data []byte)) {
	g.mu.Lock()
	g.gate = f
	g.mu.Unlock()
}

// memCluster is a cluster of replicas on one memNet.
type memCluster struct {
	t     testing.TB
	net   *memNet
	nodes []*memNode
}

type memNode struct {
	*testNode
	host string
	sm   *gatedSM
}

// memConfig: a replica on host 10.0.0.<i>, with timeouts for a network
// that never delays.
func memConfig(t testing.TB, i, expect int) Config {
	host := fmt.Sprintf("10.0.0.%d", i)
	cfg := DefaultConfig()
	cfg.Name = fmt.Sprintf("cp-%d", i)
	cfg.DataDir = "mem://" + cfg.Name
	cfg.RaftAddr = host + ":5680"
	cfg.GossipAddr = host + ":7946"
	cfg.AdvertiseHost = host
	cfg.APIAddr = host + ":5681"
	cfg.XDSAddr = host + ":5678"
	cfg.BootstrapExpect = expect
	for j := 1; j <= expect; j++ {
		if j != i {
			cfg.Join = append(cfg.Join, fmt.Sprintf("10.0.0.%d:7946", j))
		}
	}
	cfg.Version = "test"
	cfg.HeartbeatTimeout = 100 * time.Millisecond
	cfg.ElectionTimeout = 100 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.ApplyTimeout = 2 * time.Second
	cfg.ServerStabilizationTime = 100 * time.Millisecond
	cfg.Logger = testLogger(t)
	return cfg
}

// newMemCluster starts count replicas (each config passed through tune)
// and waits for a leader.
func newMemCluster(t testing.TB, count int, tune ...func(*Config)) *memCluster {
	t.Helper()
	c := &memCluster{t: t, net: newMemNet()}
	for i := 1; i <= count; i++ {
		cfg := memConfig(t, i, count)
		for _, f := range tune {
			f(&cfg)
		}
		c.nodes = append(c.nodes, c.start(cfg))
	}
	c.leader()
	return c
}

func (c *memCluster) start(cfg Config) *memNode {
	c.t.Helper()
	host, _, _ := net.SplitHostPort(cfg.RaftAddr)
	cfg.env = c.net.env(host)
	st := fsm.New(fsm.Options{Logger: cfg.Logger, OnFatal: func(err error) { c.t.Errorf("fsm fatal: %v", err) }})
	sm := &gatedSM{StateMachine: fsmState{st}}
	n, err := NewWithStateMachine(cfg, sm)
	if err != nil {
		c.t.Fatalf("new %s: %v", cfg.Name, err)
	}
	c.t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		c.t.Fatalf("start %s: %v", cfg.Name, err)
	}
	return &memNode{testNode: &testNode{Node: n, name: cfg.Name, cfg: cfg, state: st}, host: host, sm: sm}
}

// restart closes n and starts it again on the same stores.
func (c *memCluster) restart(n *memNode) *memNode {
	c.t.Helper()
	if err := n.Close(); err != nil {
		c.t.Fatalf("close %s: %v", n.name, err)
	}
	m := c.start(n.cfg)
	for i := range c.nodes {
		if c.nodes[i] == n {
			c.nodes[i] = m
		}
	}
	return m
}

func (c *memCluster) testNodes() []*testNode {
	out := make([]*testNode, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.testNode
	}
	return out
}

func (c *memCluster) node(tn *testNode) *memNode {
	for _, n := range c.nodes {
		if n.testNode == tn {
			return n
		}
	}
	c.t.Fatalf("no node %s", tn.name)
	return nil
}

// leader waits for one leader known to every open replica.
func (c *memCluster) leader() *memNode {
	c.t.Helper()
	return c.node(waitLeader(c.t, c.testNodes()))
}

func (c *memCluster) followers(of *memNode) []*memNode {
	var out []*memNode
	for _, n := range c.nodes {
		if n != of && !n.closing.Load() {
			out = append(out, n)
		}
	}
	return out
}

// isolate cuts n from every other replica.
func (c *memCluster) isolate(n *memNode) {
	var others []string
	for _, o := range c.nodes {
		if o != n {
			others = append(others, o.host)
		}
	}
	c.net.partition([]string{n.host}, others)
}

// countProposals counts, on every current replica, the proposals of
// commands whose encoded bytes satisfy match.
func (c *memCluster) countProposals(match func(data []byte) bool) func() int {
	var mu sync.Mutex
	count := 0
	for _, n := range c.nodes {
		n.onProposed(func(_ *Node, data []byte) {
			if match(data) {
				mu.Lock()
				count++
				mu.Unlock()
			}
		})
	}
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return count
	}
}

// onProposed adds f to the hooks run on n right after it proposes a command.
func (n *memNode) onProposed(f func(n *Node, data []byte)) {
	prev := n.hooks.proposed.Load()
	h := f
	if prev != nil {
		h = func(n *Node, data []byte) { (*prev)(n, data); f(n, data) }
	}
	n.hooks.proposed.Store(&h)
}

// isCommandFor reports whether data is a put or delete of the Mesh name.
func isCommandFor(name string) func(data []byte) bool {
	return func(data []byte) bool {
		cmd, err := fsm.Decode(data)
		if err != nil {
			return false
		}
		switch {
		case cmd.Put != nil:
			return cmd.Put.Resource.Name == name
		case cmd.Delete != nil:
			return cmd.Delete.Key.Name == name
		}
		return false
	}
}
