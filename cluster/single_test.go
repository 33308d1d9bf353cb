package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kuma-ha/kuma-ha/fsm"
)

func TestSingleReplica(t *testing.T) {
	n := startNode(t, testConfig(t, newSpec(t, "solo"), 1, nil))
	waitLeader(t, []*testNode{n})
	eventually(t, 5*time.Second, "ready", func() string {
		if ok, why := n.Ready(); !ok {
			return why
		}
		return ""
	})
	res, err := n.Apply(context.Background(), fsm.Command{Type: fsm.CmdEnsureDefaultMesh})
	if err != nil || res.Err != nil {
		t.Fatalf("apply: %v %+v", err, res)
	}
	if n.ClusterID() == "" {
		t.Fatal("no cluster id")
	}
	// The rolling-upgrade gate refuses a command some replica cannot decode.
	if err := n.checkProtocol(fsm.CommandType(999)); !errors.Is(err, ErrProtocolVersion) {
		t.Fatalf("protocol gate: %v", err)
	}

	reg := prometheus.NewRegistry()
	for _, c := range n.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	got := strings.Join(names, ",")
	for _, want := range []string{"kuma_cp_raft_state", "kuma_cp_raft_term", "kuma_cp_raft_applied_index", "kuma_cp_raft_commit_latency_seconds", "kuma_cp_raft_apply_latency_seconds", "kuma_cp_raft_leader_changes_total", "kuma_cp_raft_peers"} {
		if !strings.Contains(got, want) {
			t.Errorf("metric %s missing from %s", want, got)
		}
	}

	// A restart with the same data dir keeps the state and the cluster id.
	id := n.ClusterID()
	cfg := n.cfg
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	r := startNode(t, cfg)
	waitLeader(t, []*testNode{r})
	if r.ClusterID() != id {
		t.Fatalf("cluster id changed: %q -> %q", id, r.ClusterID())
	}
	if err := r.ConsistentRead(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !hasMesh(r, "default") {
		t.Fatal("state lost on restart")
	}
}

func TestCloseWithoutStart(t *testing.T) {
	cfg := testConfig(t, newSpec(t, "idle"), 1, nil)
	n, err := New(cfg, fsm.New(fsm.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := n.Ready(); ok {
		t.Fatal("ready before start")
	}
	if _, err := n.Apply(context.Background(), fsm.Command{Type: fsm.CmdEnsureDefaultMesh}); err == nil {
		t.Fatal("apply before start succeeded")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("start after close: %v", err)
	}
}
