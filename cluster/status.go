package cluster

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// readyLagTolerance: once ready, a replica stays ready while it trails the
// commit index by at most this many entries (continuous writes always leave
// a small gap between commit and apply).
const readyLagTolerance = 1024

// Ready reports whether the replica has joined a cluster and caught up; reason says why not.
func (n *Node) Ready() (bool, string) {
	if n.closing.Load() {
		return false, "shutting down"
	}
	if !n.running.Load() {
		return false, "not started"
	}
	_, leaderID := n.raft.LeaderWithID()
	if leaderID == "" {
		n.readyLatch.Store(false)
		return false, "no leader"
	}
	cfg, err := n.configuration()
	if err != nil {
		return false, "raft configuration unavailable: " + err.Error()
	}
	member := false
	for _, s := range cfg.Servers {
		if s.ID == raft.ServerID(n.cfg.Name) {
			member = true
		}
	}
	if !member {
		n.readyLatch.Store(false)
		return false, "not yet in the cluster configuration"
	}
	commit := n.raft.CommitIndex()
	applied := n.state.AppliedIndex()
	caughtUp, _ := n.appliedUpTo(commit)
	if caughtUp {
		n.readyLatch.Store(true)
		return true, ""
	}
	if n.readyLatch.Load() && commit-applied <= readyLagTolerance {
		return true, ""
	}
	n.readyLatch.Store(false)
	return false, fmt.Sprintf("catching up: applied %d of %d", applied, commit)
}

// ServeLocal reports whether this replica may serve proxies from its local
// copy of the state. With a leader that is Ready: joined and caught up, so a
// proxy gets current config. Without a leader (the cluster lost its quorum)
// a replica that has applied state keeps serving what it has, frozen: the
// proxies it serves keep their config and a proxy whose Dataplane exists can
// still fetch it, as the data plane of a Kuma zone whose control plane is
// offline. reason says why it cannot, or that it serves frozen state.
func (n *Node) ServeLocal() (ok bool, reason string) {
	ok, why := n.Ready()
	if ok || n.closing.Load() || !n.running.Load() {
		return ok, why
	}
	if _, leaderID := n.raft.LeaderWithID(); leaderID != "" {
		return false, why // there is a leader: catch up first
	}
	if applied := n.state.AppliedIndex(); applied > 0 {
		return true, fmt.Sprintf("no leader: serving the state applied up to index %d", applied)
	}
	return false, "no leader and no state applied yet"
}

// Status is this replica's view of the cluster: the Raft configuration and
// the gossip members. Indexes of other replicas come from their last
// answer to the status poll (about a second old).
func (n *Node) Status() Status {
	st := Status{}
	if !n.running.Load() {
		return st
	}
	_, leaderID := n.raft.LeaderWithID()
	st.Leader = string(leaderID)
	cfg, _ := n.configuration()
	rows := map[string]*ReplicaStatus{}
	row := func(name string) *ReplicaStatus {
		r, ok := rows[name]
		if !ok {
			r = &ReplicaStatus{Name: name, Role: "unknown", Suffrage: "nonvoter"}
			rows[name] = r
		}
		return r
	}
	for _, s := range cfg.Servers {
		r := row(string(s.ID))
		r.RaftAddress = string(s.Address)
		r.Suffrage = suffrageName(s.Suffrage)
		switch {
		case s.ID == leaderID:
			r.Role = "leader"
		default:
			r.Role = "follower"
		}
	}
	for _, m := range n.serverMembers(false) {
		r := row(m.meta.Name)
		r.APIAddress = m.meta.APIAddr
		r.XDSAddress = m.meta.XDSAddr
		if r.RaftAddress == "" {
			r.RaftAddress = m.meta.RaftAddr
		}
		r.Version = m.meta.Version
		r.Healthy = m.alive()
	}
	n.mu.Lock()
	peers := make(map[string]peerInfo, len(n.mu.peers))
	for k, v := range n.mu.peers {
		peers[k] = v
	}
	n.mu.Unlock()
	for name, p := range peers {
		r, ok := rows[name]
		if !ok || time.Since(p.at) > 10*peerPollInterval {
			continue
		}
		r.LastIndex = p.status.LastIndex
		r.AppliedIndex = p.status.AppliedIndex
		if _, inCfg := roleInConfig(cfg, name); inCfg && p.status.State == "candidate" {
			r.Role = "candidate"
		}
	}
	self := row(n.cfg.Name)
	self.Role = roleName(n.raft.State())
	if _, inCfg := roleInConfig(cfg, n.cfg.Name); !inCfg {
		self.Role = "unknown"
	}
	self.LastIndex, _ = n.lastLog()
	self.AppliedIndex = n.state.AppliedIndex()
	self.Healthy = true
	self.Version = n.cfg.Version
	self.APIAddress = n.cfg.APIAddr
	self.XDSAddress = n.cfg.XDSAddr
	if self.RaftAddress == "" {
		self.RaftAddress = n.raftAddr
	}
	for _, r := range rows {
		st.Replicas = append(st.Replicas, *r)
	}
	slices.SortFunc(st.Replicas, func(a, b ReplicaStatus) int { return strings.Compare(a.Name, b.Name) })
	return st
}

func roleInConfig(cfg raft.Configuration, name string) (raft.ServerSuffrage, bool) {
	for _, s := range cfg.Servers {
		if string(s.ID) == name {
			return s.Suffrage, true
		}
	}
	return 0, false
}
