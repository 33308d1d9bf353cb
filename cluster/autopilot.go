package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// autopilotDelegate connects raft-autopilot to gossip (server health) and
// the RPC (server stats). Autopilot promotes non-voters to voters after
// ServerStabilizationTime of health and, with DeadServerCleanup, removes
// replicas gossip declared dead.
type autopilotDelegate struct{ n *Node }

var _ autopilot.ApplicationIntegration = (*autopilotDelegate)(nil)

func (d *autopilotDelegate) AutopilotConfig() *autopilot.Config {
	c := d.n.cfg
	return &autopilot.Config{
		CleanupDeadServers:      c.DeadServerCleanup,
		LastContactThreshold:    max(4*c.HeartbeatTimeout, time.Second),
		MaxTrailingLogs:         250,
		MinQuorum:               uint(c.BootstrapExpect),
		ServerStabilizationTime: c.ServerStabilizationTime,
	}
}

func (d *autopilotDelegate) NotifyState(s *autopilot.State) {
	d.n.metrics.setFailureTolerance(s.FailureTolerance)
}

// FetchServerStats asks each alive replica for its raft stats (this replica answers locally).
func (d *autopilotDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	n := d.n
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, srv := range servers {
		if srv.NodeStatus != autopilot.NodeAlive {
			continue
		}
		if string(id) == n.cfg.Name {
			st := n.localStatus()
			mu.Lock()
			out[id] = statsOf(st)
			mu.Unlock()
			continue
		}
		m, ok := n.memberByName(string(id))
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st peerStatus
			if err := n.call(ctx, "GET", m.meta.RaftAddr, "/v1/status", nil, &st); err != nil {
				n.log.Debug("fetch replica stats", "member", string(id), "err", err)
				return
			}
			n.rememberPeer(st)
			mu.Lock()
			out[id] = statsOf(st)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func statsOf(st peerStatus) *autopilot.ServerStats {
	lc := time.Duration(st.LastContactMs) * time.Millisecond
	if st.LastContactMs < 0 {
		lc = -1
	}
	return &autopilot.ServerStats{LastContact: lc, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
}

// KnownServers are the kuma-cp replicas gossip knows, with gossip health.
func (d *autopilotDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	n := d.n
	_, leaderID := n.raft.LeaderWithID()
	out := map[raft.ServerID]*autopilot.Server{}
	for _, m := range n.serverMembers(false) {
		status := autopilot.NodeUnknown
		switch m.state {
		case memberlist.StateAlive, memberlist.StateSuspect:
			status = autopilot.NodeAlive
		case memberlist.StateDead:
			status = autopilot.NodeFailed
		case memberlist.StateLeft:
			status = autopilot.NodeLeft
		}
		id := raft.ServerID(m.meta.Name)
		out[id] = &autopilot.Server{
			ID:          id,
			Name:        m.meta.Name,
			Address:     raft.ServerAddress(m.meta.RaftAddr),
			NodeStatus:  status,
			Version:     m.meta.Version,
			RaftVersion: raft.ProtocolVersionMax,
			IsLeader:    id == leaderID,
			NodeType:    autopilot.NodeVoter,
		}
	}
	return out
}

// RemoveFailedServer is called only with DeadServerCleanup.
func (d *autopilotDelegate) RemoveFailedServer(s *autopilot.Server) {
	n := d.n
	n.log.Info("removing dead replica", "member", string(s.ID))
	if err := n.raft.RemoveServer(s.ID, 0, n.cfg.ApplyTimeout).Error(); err != nil {
		n.log.Warn("remove dead replica failed", "member", string(s.ID), "err", err)
	}
}
