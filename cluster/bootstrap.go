package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/hashicorp/raft"
)

// runBootstrap forms a new cluster when this replica has no Raft state.
//
// It waits until gossip shows BootstrapExpect alive replicas, then asks every
// one of them whether it already has Raft state; if any has, this replica
// waits to be added by that cluster's leader. Otherwise exactly one replica
// bootstraps: the first by name among the first BootstrapExpect replicas
// (sorted by name), with exactly those as voters. Replicas that see the same
// members agree on the same bootstrapper, so replicas started together form
// one cluster.
func (n *Node) runBootstrap() {
	defer n.wg.Done()
	if len(n.cfg.Join) > 0 {
		// Decide only after we have seen the pool we were told to join: a
		// replica added to a running cluster must find it first.
		select {
		case <-n.joinedCh:
		case <-n.shutdownCh:
			return
		}
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		done := n.tryBootstrap()
		if done {
			return
		}
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
	}
}

// tryBootstrap makes one bootstrap decision; false means "look again later".
func (n *Node) tryBootstrap() bool {
	if n.hasRaftState() {
		return true
	}
	members := n.serverMembers(true)
	expect := n.cfg.BootstrapExpect
	if len(members) < expect {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.shutdownCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, m := range members {
		if m.meta.Name == n.cfg.Name {
			continue
		}
		var st peerStatus
		if err := n.call(ctx, "GET", m.meta.RaftAddr, "/v1/status", nil, &st); err != nil {
			n.log.Debug("bootstrap: cannot ask replica for its state; retrying", "member", m.meta.Name, "err", err)
			return false
		}
		if st.HasState {
			n.log.Info("bootstrap: a replica already has raft state; waiting to be added by its leader", "member", m.meta.Name)
			return true
		}
	}
	chosen := members[:expect]
	if chosen[0].meta.Name != n.cfg.Name {
		n.log.Info("bootstrap: waiting for the bootstrapping replica", "bootstrapper", chosen[0].meta.Name)
		return true
	}
	if n.hasRaftState() {
		return true
	}
	var servers []raft.Server
	names := make([]string, 0, len(chosen))
	for _, m := range chosen {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.meta.Name), Address: raft.ServerAddress(m.meta.RaftAddr)})
		names = append(names, m.meta.Name)
	}
	n.setClusterID(newClusterID())
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		n.log.Error("bootstrap failed", "err", err)
		return true
	}
	n.log.Info("bootstrapped a new cluster", "voters", names, "cluster_id", n.ClusterID())
	return true
}

func (n *Node) hasRaftState() bool {
	if n.raft.LastIndex() > 0 {
		return true
	}
	cfg, err := n.configuration()
	return err == nil && len(cfg.Servers) > 0
}

func newClusterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40 // UUID v4 layout
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// peerPollInterval: how often a replica refreshes its view of the others
// (indexes for Status, the cluster id).
const peerPollInterval = time.Second

type peerInfo struct {
	status peerStatus
	at     time.Time
}

func (n *Node) rememberPeer(st peerStatus) {
	if st.Name == "" {
		return
	}
	n.mu.Lock()
	n.mu.peers[st.Name] = peerInfo{status: st, at: time.Now()}
	n.mu.Unlock()
	// Learn the cluster id from the leader of the cluster we belong to.
	if st.ClusterID != "" && n.ClusterID() == "" && n.raft != nil {
		if _, leaderID := n.raft.LeaderWithID(); string(leaderID) == st.Name && n.hasRaftState() {
			n.setClusterID(st.ClusterID)
		}
	}
}

// runPeerPoll asks every alive replica for its status.
func (n *Node) runPeerPoll() {
	defer n.wg.Done()
	t := time.NewTicker(peerPollInterval)
	defer t.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), peerPollInterval)
		for _, m := range n.serverMembers(true) {
			if m.meta.Name == n.cfg.Name {
				continue
			}
			var st peerStatus
			if err := n.call(ctx, "GET", m.meta.RaftAddr, "/v1/status", nil, &st); err == nil {
				n.rememberPeer(st)
			}
			if n.closing.Load() {
				break
			}
		}
		cancel()
	}
}
