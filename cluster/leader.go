package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// reconcileInterval: how often a leader compares gossip members with the
// Raft configuration even without membership events.
const reconcileInterval = 5 * time.Second

// runLeaderLoop follows raft leadership notifications and runs one leader
// session per term of leadership. A new session starts only after the
// previous one has fully stopped.
func (n *Node) runLeaderLoop() {
	defer n.wg.Done()
	type session struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur, last *session
	stop := func() {
		if cur != nil {
			cur.cancel()
			last, cur = cur, nil
		}
	}
	defer stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case o := <-n.observeCh:
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				n.metrics.leaderChanges.Inc()
				if lo.LeaderID == "" {
					n.log.Info("no leader")
				} else {
					n.log.Info("leader elected", "leader", string(lo.LeaderID))
				}
			}
		case isLeader := <-n.notifyCh:
			if isLeader {
				if cur != nil {
					continue // already leading
				}
				n.log.Info("became leader")
				var prev chan struct{}
				if last != nil {
					prev = last.done
				}
				s := &session{done: make(chan struct{})}
				var ctx context.Context
				ctx, s.cancel = context.WithCancel(context.Background())
				cur = s
				n.wg.Add(1)
				go n.runLeaderSession(ctx, prev, s.done)
			} else {
				if cur != nil {
					n.log.Info("lost leadership")
				}
				stop()
			}
		}
	}
}

// runLeaderSession: barrier (state current), then autopilot, the membership
// reconciler and the RunWhileLeader functions until ctx ends.
func (n *Node) runLeaderSession(ctx context.Context, prev <-chan struct{}, done chan<- struct{}) {
	defer n.wg.Done()
	defer close(done)
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			<-prev
			return
		}
	}
	for {
		err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrRaftShutdown) {
			return // the loop cancels this session
		}
		n.log.Warn("leader barrier failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	n.leaderReadyTerm.Store(n.raft.CurrentTerm())
	n.ensureClusterID()

	var wg sync.WaitGroup
	n.autopilot.Start(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.runReconcile(ctx)
	}()
	n.mu.Lock()
	fns := append([]leaderFn(nil), n.mu.leaderFns...)
	n.mu.Unlock()
	for _, lf := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.log.Debug("starting leader task", "task", lf.name)
			lf.fn(ctx)
			n.log.Debug("leader task stopped", "task", lf.name)
		}()
	}
	<-ctx.Done()
	<-n.autopilot.Stop()
	wg.Wait()
}

// ensureClusterID: a leader of a cluster formed before cluster ids existed
// (or whose bootstrapper lost its data dir) picks one.
func (n *Node) ensureClusterID() {
	if n.ClusterID() == "" {
		n.setClusterID(newClusterID())
	}
}

func (n *Node) runReconcile(ctx context.Context) {
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	for {
		n.reconcileMembers()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.reconcileCh:
		}
	}
}

// reconcileMembers adds alive gossip replicas missing from the Raft
// configuration as non-voters (autopilot promotes them once stable) and
// fixes changed addresses.
func (n *Node) reconcileMembers() {
	if n.raft.State() != raft.Leader {
		return
	}
	cfg, err := n.configuration()
	if err != nil {
		return
	}
	inConfig := map[raft.ServerID]raft.Server{}
	for _, s := range cfg.Servers {
		inConfig[s.ID] = s
	}
	n.mu.Lock()
	tomb := make(map[string]bool, len(n.mu.tombstones))
	for k := range n.mu.tombstones {
		tomb[k] = true
	}
	n.mu.Unlock()
	for _, m := range n.serverMembers(true) {
		id := raft.ServerID(m.meta.Name)
		addr := raft.ServerAddress(m.meta.RaftAddr)
		if tomb[m.meta.Name] || addr == "" {
			continue
		}
		s, ok := inConfig[id]
		if ok && s.Address == addr {
			continue
		}
		if ok {
			n.log.Info("replica address changed; updating", "member", m.meta.Name, "old", string(s.Address), "new", string(addr))
		} else {
			n.log.Info("adding replica as non-voter", "member", m.meta.Name, "raft_addr", string(addr))
		}
		// For a voter AddNonvoter only updates the address.
		if err := n.raft.AddNonvoter(id, addr, 0, n.cfg.ApplyTimeout).Error(); err != nil {
			n.log.Warn("add replica failed", "member", m.meta.Name, "err", err)
			return
		}
	}
}
