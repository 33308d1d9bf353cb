package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"go.etcd.io/bbolt"

	"github.com/kuma-ha/kuma-ha/fsm"
)

// boltOptions: a second process on the same data dir fails instead of
// hanging; the free list is not written on every commit (fewer pages per
// fsync; bolt rebuilds it when it opens the file).
func boltOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

// memberMeta is this replica's gossip metadata (memberlist limits it to 512 bytes).
type memberMeta struct {
	Kind            string `json:"k"` // metaKind: marks kuma-cp replicas in a shared pool
	Name            string `json:"n"`
	RaftAddr        string `json:"r"`
	APIAddr         string `json:"a,omitempty"`
	XDSAddr         string `json:"x,omitempty"`
	Version         string `json:"v,omitempty"`
	Protocol        int    `json:"p"`
	BootstrapExpect int    `json:"b"`
	Instance        string `json:"i,omitempty"` // this run of the replica
}

const metaKind = "kuma-cp"

// member is what gossip tells us about one replica.
type member struct {
	meta   memberMeta
	state  memberlist.NodeStateType
	addr   string // gossip address
	since  time.Time
	joined int // number of times seen joining (restart detection)
}

func (m *member) alive() bool {
	return m.state == memberlist.StateAlive || m.state == memberlist.StateSuspect
}

func (n *Node) startGossip() error {
	cfg := n.cfg
	host, portStr, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", cfg.GossipAddr, err)
	}
	port, _ := strconv.Atoi(portStr)
	if host == "" {
		host = "0.0.0.0"
	}
	meta := memberMeta{
		Kind:            metaKind,
		Name:            cfg.Name,
		RaftAddr:        n.raftAddr,
		APIAddr:         cfg.APIAddr,
		XDSAddr:         cfg.XDSAddr,
		Version:         cfg.Version,
		Protocol:        fsm.ProtocolVersion,
		BootstrapExpect: cfg.BootstrapExpect,
		Instance:        n.instance,
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("encode gossip meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("gossip meta is %d bytes, over the %d-byte limit: shorten Name, APIAddr, XDSAddr or Version", len(b), memberlist.MetaMaxSize)
	}
	n.metaBytes = b

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertiseAddr = cfg.advertiseHost()
	mc.AdvertisePort = port
	mc.Delegate = &gossipDelegate{n: n}
	mc.Events = &gossipEvents{n: n}
	mc.Logger = newStdLogger(n.log.With("logger", "memberlist"))
	// Faster failure detection than the LAN defaults; replicas of one
	// control plane are few and close.
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.GossipInterval = 100 * time.Millisecond
	mc.SuspicionMult = 3
	mc.PushPullInterval = 15 * time.Second
	mc.DeadNodeReclaimTime = 10 * time.Second
	if n.env.gossipTransport != nil {
		mc.Transport = n.env.gossipTransport()
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s: %w", cfg.GossipAddr, err)
	}
	n.ml = ml
	if mc.Transport != nil {
		n.gossipAddr = ml.LocalNode().Address()
		return nil
	}
	if port == 0 {
		port = int(ml.LocalNode().Port)
	}
	n.gossipAddr = net.JoinHostPort(mc.AdvertiseAddr, strconv.Itoa(port))
	return nil
}

// runJoin joins the configured addresses, retrying with backoff until one
// answers (the others may not be up yet).
func (n *Node) runJoin() {
	defer n.wg.Done()
	var addrs []string
	for _, a := range n.cfg.Join {
		if a != n.gossipAddr && a != n.cfg.GossipAddr {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		n.markJoined()
		return
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		joined, err := n.ml.Join(addrs)
		if joined > 0 {
			n.log.Info("joined gossip pool", "contacted", joined)
			n.markJoined()
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			n.log.Info("gossip join failed; retrying", "join", addrs, "attempt", attempt, "err", err)
		}
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (n *Node) markJoined() { n.joinedOnce.Do(func() { close(n.joinedCh) }) }

// serverMembers returns the known kuma-cp replicas (alive only if aliveOnly), sorted by name.
func (n *Node) serverMembers(aliveOnly bool) []member {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]member, 0, len(n.mu.members))
	for _, m := range n.mu.members {
		if aliveOnly && !m.alive() {
			continue
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b member) int {
		switch {
		case a.meta.Name < b.meta.Name:
			return -1
		case a.meta.Name > b.meta.Name:
			return 1
		}
		return 0
	})
	return out
}

func (n *Node) memberByName(name string) (member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.mu.members[name]
	if !ok {
		return member{}, false
	}
	return *m, true
}

func (n *Node) triggerReconcile() {
	select {
	case n.reconcileCh <- struct{}{}:
	default:
	}
}

// gossipDelegate provides the node meta; no user messages are exchanged.
type gossipDelegate struct{ n *Node }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	if len(d.n.metaBytes) > limit {
		return nil
	}
	return d.n.metaBytes
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// gossipEvents keeps the member table. Called from memberlist goroutines:
// never blocks.
type gossipEvents struct{ n *Node }

func (e *gossipEvents) update(node *memberlist.Node, join bool) {
	var meta memberMeta
	if err := json.Unmarshal(node.Meta, &meta); err != nil || meta.Kind != metaKind || meta.Name != node.Name {
		return // not a kuma-cp replica (or a broken one): ignore
	}
	n := e.n
	n.mu.Lock()
	m, ok := n.mu.members[node.Name]
	if !ok {
		m = &member{}
		n.mu.members[node.Name] = m
	}
	prev := m.state
	m.meta = meta
	m.state = memberlist.StateAlive // join and update are only sent for live nodes
	m.addr = node.Address()
	if join {
		m.joined++
		delete(n.mu.tombstones, node.Name) // a replica that rejoins may be added again
	}
	if prev != m.state || join {
		m.since = time.Now()
	}
	n.mu.Unlock()
	if join && node.Name != n.cfg.Name {
		n.log.Info("replica joined gossip", "member", node.Name, "raft_addr", meta.RaftAddr)
	}
	n.triggerReconcile()
}

func (e *gossipEvents) NotifyJoin(node *memberlist.Node)   { e.update(node, true) }
func (e *gossipEvents) NotifyUpdate(node *memberlist.Node) { e.update(node, false) }
func (e *gossipEvents) NotifyLeave(node *memberlist.Node) {
	n := e.n
	n.mu.Lock()
	m, ok := n.mu.members[node.Name]
	if ok {
		// NotifyLeave means gone: memberlist does not always copy its
		// internal state into node.State, so only "left" is taken from it.
		m.state = memberlist.StateDead
		if node.State == memberlist.StateLeft {
			m.state = memberlist.StateLeft
		}
		m.since = time.Now()
	}
	n.mu.Unlock()
	if ok && node.Name != n.cfg.Name {
		how := "failed"
		if node.State == memberlist.StateLeft {
			how = "left"
		}
		n.log.Info("replica "+how+" gossip", "member", node.Name)
		n.triggerReconcile()
	}
}

// Member is one replica as gossip sees it.
type Member struct {
	Name     string
	Instance string // changes every time the replica process starts
	APIAddr  string
	XDSAddr  string
	Version  string
	Alive    bool // alive or suspect; false once gossip declared it dead or it left
}

// Members returns every replica gossip knows, this one included, sorted by name.
func (n *Node) Members() []Member {
	ms := n.serverMembers(false)
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{Name: m.meta.Name, Instance: m.meta.Instance, APIAddr: m.meta.APIAddr,
			XDSAddr: m.meta.XDSAddr, Version: m.meta.Version, Alive: m.alive()})
	}
	return out
}

// Instance identifies this run of the replica (random, new on every start).
func (n *Node) Instance() string { return n.instance }

// Name is the replica's name.
func (n *Node) Name() string { return n.cfg.Name }
