package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/kuma-ha/kuma-ha/fsm"
)

// clusterIDKey is where the cluster id lives in the stable store (next to
// raft's own keys).
var clusterIDKey = []byte("kuma-ha/cluster-id")

// logCacheSize: recent Raft entries kept in memory (a few batches of writes).
const logCacheSize = 1024

// Node is one replica: Raft, gossip and the forwarding RPC.
type Node struct {
	cfg      Config
	instance string
	log      *slog.Logger
	hlog     hclog.Logger
	state    StateMachine

	env    *env
	stores *stores
	hooks  hooks

	// Set by Start, read-only afterwards.
	raft       *raft.Raft
	transport  raft.Transport
	mux        *mux
	rpcServer  *http.Server
	httpClient *http.Client
	ml         *memberlist.Memberlist
	autopilot  *autopilot.Autopilot
	raftAddr   string // advertised host:port of Raft and the RPC
	gossipAddr string // advertised host:port of memberlist
	metaBytes  []byte
	observer   *raft.Observer

	metrics *metrics

	notifyCh    chan bool
	observeCh   chan raft.Observation
	reconcileCh chan struct{}
	joinedCh    chan struct{}
	joinedOnce  sync.Once
	shutdownCh  chan struct{}
	wg          sync.WaitGroup

	started  atomic.Bool
	running  atomic.Bool // Start completed: the fields it sets are safe to read
	closing  atomic.Bool
	closeMu  sync.Mutex
	closed   bool
	closeErr error

	visible         atomic.Uint64 // see WaitVisible
	readyLatch      atomic.Bool
	leaderReadyTerm atomic.Uint64

	mu struct {
		sync.Mutex
		leaderFns  []leaderFn
		members    map[string]*member
		peers      map[string]peerInfo
		tombstones map[string]bool
		clusterID  string
	}
}

// hooks let in-process tests act at an exact step of the write path.
type hooks struct {
	// proposed runs on the leader right after raft.Apply of a command's bytes.
	proposed atomic.Pointer[func(n *Node, data []byte)]
}

type leaderFn struct {
	name string
	fn   func(ctx context.Context)
}

// New opens the stores under DataDir and prepares the node; it listens on nothing yet.
func New(cfg Config, state *fsm.FSM) (*Node, error) {
	if state == nil {
		return nil, errors.New("cluster: nil state machine")
	}
	return NewWithStateMachine(cfg, fsmState{state})
}

// NewWithStateMachine is New for any StateMachine (tests, tools).
func NewWithStateMachine(cfg Config, sm StateMachine) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sm == nil {
		return nil, errors.New("cluster: nil state machine")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "cluster", "replica", cfg.Name)
	n := &Node{
		cfg:         cfg,
		log:         log,
		hlog:        newHCLogger(log, "raft"),
		state:       sm,
		notifyCh:    make(chan bool, 16),
		observeCh:   make(chan raft.Observation, 64),
		reconcileCh: make(chan struct{}, 1),
		joinedCh:    make(chan struct{}),
		shutdownCh:  make(chan struct{}),
		instance:    newInstanceID(),
	}
	n.mu.members = map[string]*member{}
	n.mu.peers = map[string]peerInfo{}
	n.mu.tombstones = map[string]bool{}
	n.metrics = newMetrics(n)

	n.env = cfg.env
	if n.env == nil {
		n.env = tcpEnv()
	}
	st, err := n.env.openStores(cfg.DataDir, n.hlog)
	if err != nil {
		return nil, err
	}
	n.stores = st
	if id, err := st.stable.Get(clusterIDKey); err == nil && len(id) > 0 {
		n.mu.clusterID = string(id)
	}
	return n, nil
}

// Start listens, joins the gossip pool and starts Raft (bootstrapping when
// BootstrapExpect replicas are seen and none has state).
func (n *Node) Start(ctx context.Context) error {
	if n.closing.Load() {
		return ErrShuttingDown
	}
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("cluster: node already started")
	}
	if err := n.start(ctx); err != nil {
		n.log.Error("start failed", "err", err)
		_ = n.Close()
		return err
	}
	return nil
}

func (n *Node) start(ctx context.Context) error {
	cfg := n.cfg
	host := cfg.advertiseHost()

	ln, err := n.env.listen(cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("listen on raft address %s: %w", cfg.RaftAddr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	n.raftAddr = net.JoinHostPort(host, strconv.Itoa(port))
	n.mux = newMux(ln, advertisedAddr(n.raftAddr), n.log)
	n.mux.run()

	// Raft.
	if n.env.raftTransport != nil {
		n.transport = n.env.raftTransport(n.raftAddr)
	} else {
		n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  streamLayer{chanListener: n.mux.raftLn, dial: n.env.dial},
			MaxPool: 3,
			Timeout: 5 * time.Second,
			Logger:  n.hlog.Named("transport"),
		})
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.NoSnapshotRestoreOnStart = false
	rc.Logger = n.hlog
	rc.NotifyCh = n.notifyCh
	// Writes that arrive while the leader fsyncs queue up and go out as one
	// batch (one fsync, one AppendEntries per follower).
	rc.BatchApplyCh = true
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	st := n.stores
	hasState, err := raft.HasExistingState(st.log, st.stable, st.snaps)
	if err != nil {
		return fmt.Errorf("check raft state: %w", err)
	}
	// Replication and the FSM read recent entries from memory, not bolt.
	logs, err := raft.NewLogCache(logCacheSize, st.log)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, raftFSM{n.state}, logs, st.stable, st.snaps, n.transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.observer = raft.NewObserver(n.observeCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	n.autopilot = autopilot.New(r, &autopilotDelegate{n: n},
		autopilot.WithLogger(n.hlog.Named("autopilot")),
		autopilot.WithUpdateInterval(time.Second),
		autopilot.WithReconcileInterval(time.Second),
	)
	n.wg.Add(1)
	go n.runLeaderLoop()

	// Replica-to-replica RPC.
	n.rpcServer = &http.Server{
		Handler:           n.rpcHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          newStdLogger(n.log.With("logger", "rpc")),
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.rpcServer.Serve(n.mux.rpcLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error("rpc server stopped", "err", err)
		}
	}()
	n.httpClient = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialMux(ctx, n.env.dial, addr, 2*time.Second, muxRPC)
		},
		// One connection per forwarded write in flight, kept for the next.
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}}

	// Gossip.
	if err := n.startGossip(); err != nil {
		return err
	}
	n.wg.Add(2)
	go n.runJoin()
	go n.runPeerPoll()
	if hasState {
		n.log.Info("found existing raft state; not bootstrapping", "data_dir", cfg.DataDir)
	} else {
		n.wg.Add(1)
		go n.runBootstrap()
	}
	n.running.Store(true)
	n.log.Info("replica started", "raft_addr", n.raftAddr, "gossip_addr", n.gossipAddr,
		"bootstrap_expect", cfg.BootstrapExpect, "join", cfg.Join)
	return ctx.Err()
}

// Close stops gracefully: a leader transfers leadership first; leaves gossip; closes stores.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return n.closeErr
	}
	n.closed = true
	n.closing.Store(true)
	var errs []error

	if n.raft != nil && n.raft.State() == raft.Leader && n.otherVoters() > 0 {
		n.transferLeadership()
	}
	close(n.shutdownCh)
	if n.raft != nil {
		n.raft.DeregisterObserver(n.observer)
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	if n.ml != nil {
		if err := n.ml.Leave(time.Second); err != nil {
			n.log.Debug("gossip leave", "err", err)
		}
		if err := n.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("gossip shutdown: %w", err))
		}
	}
	if n.rpcServer != nil {
		_ = n.rpcServer.Close()
	}
	if c, ok := n.transport.(raft.WithClose); ok {
		_ = c.Close()
	}
	if n.mux != nil {
		n.mux.close()
	}
	if n.httpClient != nil {
		n.httpClient.CloseIdleConnections()
	}
	n.wg.Wait()
	if n.httpClient != nil {
		n.httpClient.CloseIdleConnections()
	}
	if err := n.stores.close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft store: %w", err))
	}
	n.closeErr = errors.Join(errs...)
	n.log.Info("replica stopped")
	return n.closeErr
}

// transferLeadership hands leadership to another voter, bounded in time so
// a stuck transfer cannot block shutdown.
func (n *Node) transferLeadership() {
	n.log.Info("transferring leadership before shutdown")
	f := n.raft.LeadershipTransfer()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			n.log.Warn("leadership transfer failed", "err", err)
			return
		}
		n.log.Info("leadership transferred")
	case <-time.After(4 * n.cfg.ElectionTimeout):
		n.log.Warn("leadership transfer timed out")
	}
}

func (n *Node) otherVoters() int {
	cfg, err := n.configuration()
	if err != nil {
		return 0
	}
	c := 0
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(n.cfg.Name) {
			c++
		}
	}
	return c
}

func (n *Node) configuration() (raft.Configuration, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}

// IsLeader reports whether this replica currently leads.
func (n *Node) IsLeader() bool {
	return n.running.Load() && n.raft.State() == raft.Leader
}

// RunWhileLeader registers fn to run in its own goroutine each time this
// replica becomes leader; its ctx is cancelled promptly when leadership is lost
// or the node closes. Register before Start.
func (n *Node) RunWhileLeader(name string, fn func(ctx context.Context)) {
	if n.started.Load() {
		n.log.Error("RunWhileLeader called after Start; ignored", "name", name)
		return
	}
	n.mu.Lock()
	n.mu.leaderFns = append(n.mu.leaderFns, leaderFn{name: name, fn: fn})
	n.mu.Unlock()
}

// ClusterID is a stable id of the cluster, chosen by the replica that
// bootstrapped it and learned by the others from the leader.
func (n *Node) ClusterID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.clusterID
}

func (n *Node) setClusterID(id string) {
	n.mu.Lock()
	if n.mu.clusterID == id {
		n.mu.Unlock()
		return
	}
	n.mu.clusterID = id
	n.mu.Unlock()
	if err := n.stores.stable.Set(clusterIDKey, []byte(id)); err != nil {
		n.log.Error("store cluster id", "err", err)
	}
	n.log.Info("cluster id", "cluster_id", id)
}
