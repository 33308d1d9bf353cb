package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm"
)

func TestClusterLifecycle(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := waitLeader(t, nodes)

	// One cluster: every replica sees the same three voters and cluster id.
	eventually(t, 10*time.Second, "three voters everywhere", func() string {
		for _, n := range nodes {
			v := voters(t, n)
			if len(v) != 3 || v["cp-1"] != "voter" || v["cp-2"] != "voter" || v["cp-3"] != "voter" {
				return fmt.Sprintf("%s: %v", n.name, v)
			}
		}
		return ""
	})
	eventually(t, 10*time.Second, "same cluster id", func() string {
		id := leader.ClusterID()
		for _, n := range nodes {
			if n.ClusterID() == "" || n.ClusterID() != id {
				return fmt.Sprintf("%s: %q vs leader %q", n.name, n.ClusterID(), id)
			}
		}
		return ""
	})
	eventually(t, 10*time.Second, "ready", func() string {
		for _, n := range nodes {
			if ok, why := n.Ready(); !ok {
				return n.name + ": " + why
			}
		}
		return ""
	})

	// A write through a follower is forwarded and visible on it at once.
	fs := followers(nodes, leader)
	ctx := context.Background()
	res, err := fs[0].Apply(ctx, meshPut(t, "m1"))
	if err != nil {
		t.Fatalf("apply via follower: %v", err)
	}
	if res.Err != nil || !res.Created || res.Index == 0 || res.Resource != nil {
		t.Fatalf("result: %+v", res)
	}
	if err := fs[0].WaitVisible(ctx); err != nil {
		t.Fatalf("wait visible: %v", err)
	}
	if !hasMesh(fs[0], "m1") {
		t.Fatal("follower does not see its own write")
	}
	// A rejection travels back as Result.Err and keeps its identity.
	ifv := uint64(0)
	cmd := meshPut(t, "m1")
	cmd.Put.IfVersion = &ifv
	res, err = fs[0].Apply(ctx, cmd)
	if err != nil || !errors.Is(res.Err, fsm.ErrAlreadyExists) && !errors.Is(res.Err, fsm.ErrConflict) {
		t.Fatalf("conditional put: res=%+v err=%v", res, err)
	}
	// A consistent read on the other follower includes the write.
	if err := fs[1].ConsistentRead(ctx); err != nil {
		t.Fatalf("consistent read: %v", err)
	}
	if !hasMesh(fs[1], "m1") {
		t.Fatal("consistent read on follower misses the write")
	}
	if err := leader.ConsistentRead(ctx); err != nil {
		t.Fatalf("consistent read on leader: %v", err)
	}

	st := fs[0].Status()
	if st.Leader != leader.name || len(st.Replicas) != 3 {
		t.Fatalf("status: %+v", st)
	}
	for _, r := range st.Replicas {
		wantRole := "follower"
		if r.Name == leader.name {
			wantRole = "leader"
		}
		if r.Role != wantRole || r.Suffrage != "voter" || !r.Healthy || r.RaftAddress == "" || r.APIAddress == "" || r.Version != "test" {
			t.Errorf("status row: %+v", r)
		}
		if r.Name == fs[0].name && (r.AppliedIndex == 0 || r.LastIndex < r.AppliedIndex) {
			t.Errorf("self row indexes: %+v", r)
		}
	}

	// The leader stops: a new leader is elected and writes succeed.
	old := leader
	if err := old.Close(); err != nil {
		t.Fatalf("close leader: %v", err)
	}
	if err := old.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := old.Apply(ctx, meshPut(t, "x")); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("apply on closed node: %v", err)
	}
	leader = waitLeader(t, nodes)
	if leader == old {
		t.Fatal("closed node still leads")
	}
	for _, n := range followers(nodes, nil) {
		if _, err := n.Apply(ctx, meshPut(t, "after-"+n.name)); err != nil {
			t.Fatalf("apply after failover on %s: %v", n.name, err)
		}
	}

	// A fourth replica joins the running cluster and becomes a voter.
	s4 := newSpec(t, "cp-4")
	n4 := startNode(t, testConfig(t, s4, 1, []string{nodes[0].cfg.GossipAddr, nodes[1].cfg.GossipAddr, nodes[2].cfg.GossipAddr}))
	eventually(t, 20*time.Second, "cp-4 voter", func() string {
		if v := voters(t, leader); v["cp-4"] != "voter" {
			return fmt.Sprintf("%v", v)
		}
		return ""
	})
	eventually(t, 10*time.Second, "cp-4 caught up", func() string {
		if !hasMesh(n4, "m1") {
			return "m1 missing"
		}
		if n4.ClusterID() != leader.ClusterID() {
			return fmt.Sprintf("cluster id %q vs %q", n4.ClusterID(), leader.ClusterID())
		}
		if ok, why := n4.Ready(); !ok {
			return why
		}
		return ""
	})

	// The stopped replica is removed by name through a follower.
	var via *testNode
	for _, n := range followers(nodes, leader) {
		via = n
	}
	if err := via.RemoveReplica(ctx, old.name); err != nil {
		t.Fatalf("remove replica: %v", err)
	}
	if v := voters(t, leader); len(v) != 3 || v[old.name] != "" {
		t.Fatalf("after remove: %v", v)
	}
	if err := via.RemoveReplica(ctx, "nope"); !errors.Is(err, ErrUnknownReplica) {
		t.Fatalf("remove unknown: %v", err)
	}
}

func TestConcurrentBootstrapFormsOneCluster(t *testing.T) {
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			nodes := startCluster(t, 3)
			leader := waitLeader(t, nodes)
			eventually(t, 10*time.Second, "one configuration", func() string {
				for _, n := range nodes {
					if v := voters(t, n); len(v) != 3 {
						return fmt.Sprintf("%s: %v", n.name, v)
					}
					if n.ClusterID() != leader.ClusterID() {
						return "cluster ids differ"
					}
				}
				return ""
			})
			for _, n := range nodes {
				_ = n.Close()
			}
		})
	}
}

func TestNoQuorumFailsFast(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	fs := followers(nodes, leader)
	if _, err := fs[0].Apply(context.Background(), meshPut(t, "m1")); err != nil {
		t.Fatal(err)
	}
	survivor := fs[1]
	_ = leader.Close()
	_ = fs[0].Close()

	start := time.Now()
	// Refused (no leader) or, if the survivor still led and proposed,
	// outcome unknown; either way soon.
	_, err := survivor.Apply(context.Background(), meshPut(t, "m2"))
	if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("want ErrNoQuorum or ErrOutcomeUnknown, got %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("ErrNoQuorum after %s", d)
	}
	if err := survivor.ConsistentRead(context.Background()); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("consistent read: want ErrNoQuorum, got %v", err)
	}
	eventually(t, 5*time.Second, "not ready", func() string {
		if ok, _ := survivor.Ready(); ok {
			return "still ready"
		}
		return ""
	})
}

func TestRunWhileLeader(t *testing.T) {
	var mu sync.Mutex
	running := map[string]int{}
	var cancelled atomic.Int32
	hook := func(n *Node) {
		n.RunWhileLeader("test", func(ctx context.Context) {
			mu.Lock()
			running[n.cfg.Name]++
			mu.Unlock()
			<-ctx.Done()
			cancelled.Add(1)
			mu.Lock()
			running[n.cfg.Name]--
			mu.Unlock()
		})
	}
	nodes := startCluster(t, 3, hook)
	leader := waitLeader(t, nodes)
	check := func(want string) func() string {
		return func() string {
			mu.Lock()
			defer mu.Unlock()
			total := 0
			for _, c := range running {
				total += c
			}
			if total != 1 || running[want] != 1 {
				return fmt.Sprintf("running: %v (want only %s)", running, want)
			}
			return ""
		}
	}
	eventually(t, 10*time.Second, "hook on leader", check(leader.name))
	_ = leader.Close()
	if cancelled.Load() != 1 {
		t.Fatalf("hook not cancelled on close: %d", cancelled.Load())
	}
	next := waitLeader(t, nodes)
	eventually(t, 10*time.Second, "hook on new leader", check(next.name))
	// Losing leadership without closing: transfer it away.
	if err := next.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	third := waitLeader(t, nodes)
	if third == next {
		t.Fatal("leadership did not move")
	}
	eventually(t, 10*time.Second, "hook moved after leadership loss", check(third.name))
}

func TestRestartRejoins(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	f := followers(nodes, leader)[0]
	if _, err := leader.Apply(context.Background(), meshPut(t, "m1")); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	_ = f.Close()
	if _, err := leader.Apply(context.Background(), meshPut(t, "m2")); err != nil {
		t.Fatal(err)
	}
	r := startNode(t, cfg)
	eventually(t, 15*time.Second, "restarted replica caught up", func() string {
		if !hasMesh(r, "m1") || !hasMesh(r, "m2") {
			return "missing writes"
		}
		if ok, why := r.Ready(); !ok {
			return why
		}
		return ""
	})
	if v := voters(t, r); len(v) != 3 {
		t.Fatalf("config after restart: %v", v)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Name, good.DataDir, good.RaftAddr, good.GossipAddr = "a", "/tmp/x", ":5690", ":5691"
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		field string
		mod   func(*Config)
	}{
		{"Name", func(c *Config) { c.Name = "" }},
		{"Name", func(c *Config) { c.Name = "a b" }},
		{"DataDir", func(c *Config) { c.DataDir = "" }},
		{"RaftAddr", func(c *Config) { c.RaftAddr = "nope" }},
		{"GossipAddr", func(c *Config) { c.GossipAddr = "host:99999" }},
		{"Join[1]", func(c *Config) { c.Join = []string{"a:1", "b"} }},
		{"BootstrapExpect", func(c *Config) { c.BootstrapExpect = 0 }},
		{"HeartbeatTimeout", func(c *Config) { c.HeartbeatTimeout = time.Millisecond }},
		{"ElectionTimeout", func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }},
		{"LeaderLeaseTimeout", func(c *Config) { c.LeaderLeaseTimeout = time.Second }},
		{"CommitTimeout", func(c *Config) { c.CommitTimeout = 0 }},
		{"ApplyTimeout", func(c *Config) { c.ApplyTimeout = -1 }},
		{"SnapshotThreshold", func(c *Config) { c.SnapshotThreshold = 0 }},
		{"SnapshotInterval", func(c *Config) { c.SnapshotInterval = 0 }},
		{"ServerStabilizationTime", func(c *Config) { c.ServerStabilizationTime = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			c := good
			tt.mod(&c)
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("want error on %s, got %v", tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("message does not name the field: %v", err)
			}
		})
	}
}
