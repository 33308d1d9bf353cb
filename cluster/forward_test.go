package cluster

// Forwarding, retries and their failures at exact steps, on the in-memory
// harness (inmem_test.go).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

var victim = resource.Key{Type: resource.TypeMesh, Name: "victim"}

func conditionalPut(t *testing.T, version uint64) fsm.Command {
	cmd := meshPut(t, victim.Name)
	cmd.Put.IfVersion = &version
	return cmd
}

func conditionalDelete(version uint64) fsm.Command {
	return fsm.Command{Type: fsm.CmdDelete, Delete: &fsm.DeleteCommand{Key: victim, IfVersion: version}}
}

func applyOK(t *testing.T, n *memNode, cmd fsm.Command) *fsm.Result {
	t.Helper()
	res, err := n.Apply(context.Background(), cmd)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("apply on %s: %v", n.name, err)
	}
	return res
}

// TestProposedThenLeaderStopsIsNotRetried is the hole of the issue: the
// leader has proposed (here: committed) a conditional write and stops before
// answering. The follower that forwarded it must answer "outcome unknown",
// not retry it on the next leader, where it would apply twice or be answered
// 412 (put) or 404 (delete) although it was applied.
func TestProposedThenLeaderStopsIsNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, version uint64) fsm.Command
		// applied reports whether a replica's state shows the write.
		applied func(n *memNode, version uint64) bool
	}{
		{"conditional put", conditionalPut, func(n *memNode, version uint64) bool {
			r, ok := n.state.Get(victim)
			return ok && r.Version > version
		}},
		{"conditional delete", func(_ *testing.T, version uint64) fsm.Command { return conditionalDelete(version) },
			func(n *memNode, _ uint64) bool {
				_, ok := n.state.Get(victim)
				return !ok
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMemCluster(t, 3)
			leader := c.leader()
			via := c.followers(leader)[0]
			version := applyOK(t, via, meshPut(t, victim.Name)).Index

			proposals := c.countProposals(isCommandFor(victim.Name))
			// The leader's state machine stops at the write: it is
			// committed (raft applies only committed entries) and its answer
			// not yet sent. Then the leader shuts down (SIGTERM's path:
			// leadership transfer, then Raft stops).
			reached, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			leader.sm.setGate(func(_ uint64, data []byte) {
				if isCommandFor(victim.Name)(data) {
					once.Do(func() { close(reached) })
					<-release
				}
			})
			t.Cleanup(func() { close(release) }) // before the nodes close; lets the leader's Close end
			closed := make(chan error, 1)
			go func() {
				<-reached
				closed <- leader.Close()
			}()

			start := time.Now()
			res, err := via.Apply(context.Background(), tc.write(t, version))
			if took, bound := time.Since(start), via.cfg.ApplyTimeout; took >= bound {
				t.Errorf("the answer took %s: it came from a timeout, not from the leader", took)
			}
			if err == nil {
				t.Fatalf("apply answered %+v (err %v); want ErrOutcomeUnknown", res, res.Err)
			}
			if !errors.Is(err, ErrOutcomeUnknown) || !MayHaveApplied(err) {
				t.Fatalf("apply: %v; want ErrOutcomeUnknown", err)
			}
			wantProposals(t, proposals, 1)
			// It was committed: the survivors apply it, exactly once.
			for _, n := range c.followers(leader) {
				eventually(t, 5*time.Second, n.name+" applies the write", func() string {
					if !tc.applied(n, version) {
						return "not applied"
					}
					return ""
				})
			}
			wantProposals(t, proposals, 1)
		})
	}
}

// TestLeaderLosesQuorumMidCommit: the leader proposes a write it can no
// longer commit (it is cut off and has not noticed yet). It answers
// "outcome unknown" once it steps down, and nothing proposes the write again.
func TestLeaderLosesQuorumMidCommit(t *testing.T) {
	// A lease long enough that the cut leader surely still leads when the
	// write arrives.
	c := newMemCluster(t, 3, func(cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 400*time.Millisecond, 400*time.Millisecond, 400*time.Millisecond
	})
	leader := c.leader()
	proposals := c.countProposals(isCommandFor(victim.Name))
	c.isolate(leader)
	_, err := leader.Apply(context.Background(), meshPut(t, victim.Name))
	unknownNeverRetried(t, c, err, proposals)
}

// TestForwardedAnswerLost: the connection to the leader breaks after the
// follower sent the write (here: right after the leader proposed it). The
// follower cannot know whether it applied: "outcome unknown", no retry.
func TestForwardedAnswerLost(t *testing.T) {
	c := newMemCluster(t, 3)
	leader := c.leader()
	via := c.followers(leader)[0]
	proposals := c.countProposals(isCommandFor(victim.Name))
	var once sync.Once
	leader.onProposed(func(*Node, []byte) { once.Do(func() { c.isolate(leader) }) })

	_, err := via.Apply(context.Background(), meshPut(t, victim.Name))
	unknownNeverRetried(t, c, err, proposals)
}

// unknownNeverRetried: err says "outcome unknown", the write was proposed
// once, and it is not proposed again while the healed cluster goes on.
func unknownNeverRetried(t *testing.T, c *memCluster, err error, proposals func() int) {
	t.Helper()
	if !errors.Is(err, ErrOutcomeUnknown) || !MayHaveApplied(err) {
		t.Fatalf("apply: %v; want ErrOutcomeUnknown", err)
	}
	wantProposals(t, proposals, 1)
	c.net.heal()
	applyOK(t, c.leader(), meshPut(t, "after"))
	wantProposals(t, proposals, 1)
}

func wantProposals(t *testing.T, proposals func() int, want int) {
	t.Helper()
	if n := proposals(); n != want {
		t.Fatalf("the write was proposed %d times; want %d", n, want)
	}
}

// TestFollowerPartitionedRefusesWithoutProposing: a follower cut from the
// leader cannot forward; it says so (ErrNoQuorum, may not have applied),
// proposes nothing, and forwards again once the partition heals. The old
// leader, alone, refuses consistent reads instead of serving stale ones.
func TestFollowerPartitionedRefusesWithoutProposing(t *testing.T) {
	c := newMemCluster(t, 3)
	leader := c.leader()
	follower := c.followers(leader)[0]
	proposals := c.countProposals(isCommandFor(victim.Name))

	c.isolate(follower)
	_, err := follower.Apply(context.Background(), meshPut(t, victim.Name))
	if !errors.Is(err, ErrNoQuorum) || MayHaveApplied(err) {
		t.Fatalf("apply on a cut follower: %v; want ErrNoQuorum that was not applied", err)
	}
	wantProposals(t, proposals, 0)
	c.net.heal()
	applyOK(t, follower, meshPut(t, victim.Name))

	c.isolate(leader)
	eventually(t, 5*time.Second, "the isolated leader refuses consistent reads", func() string {
		if err := leader.ConsistentRead(context.Background()); !errors.Is(err, ErrNoQuorum) {
			return fmt.Sprintf("consistent read: %v", err)
		}
		return ""
	})
}

// TestRefusedBeforeProposingIsRetriedOnce: a leader that refuses (it is
// stopping) is asked once more and then the write fails as not applied.
func TestRefusedBeforeProposingIsRetriedOnce(t *testing.T) {
	c := newMemCluster(t, 3)
	leader := c.leader()
	follower := c.followers(leader)[0]
	proposals := c.countProposals(isCommandFor(victim.Name))

	leader.closing.Store(true) // refuses every command as "shutting down"
	_, err := follower.Apply(context.Background(), meshPut(t, victim.Name))
	leader.closing.Store(false)
	if !errors.Is(err, ErrNoQuorum) || MayHaveApplied(err) {
		t.Fatalf("apply: %v; want ErrNoQuorum that was not applied", err)
	}
	wantProposals(t, proposals, 0)
	applyOK(t, follower, meshPut(t, victim.Name))
	wantProposals(t, proposals, 1)
}

// TestForwarderClosesWhileLeaderCommits: the follower that forwarded a write
// shuts down while the leader commits it. Its answer must not claim the write
// was refused.
func TestForwarderClosesWhileLeaderCommits(t *testing.T) {
	c := newMemCluster(t, 3)
	leader := c.leader()
	follower := c.followers(leader)[0]
	closed := make(chan error, 1)
	var once sync.Once
	leader.onProposed(func(*Node, []byte) {
		once.Do(func() { go func() { closed <- follower.Close() }() })
	})
	res, err := follower.Apply(context.Background(), meshPut(t, victim.Name))
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	switch {
	case err == nil && res.Err == nil:
		// Answered before the follower stopped waiting: fine.
	case err != nil && MayHaveApplied(err) && errors.Is(err, ErrOutcomeUnknown):
	default:
		t.Fatalf("apply: %+v, %v; want success or ErrOutcomeUnknown", res, err)
	}
	eventually(t, 5*time.Second, "the leader applies the write", func() string {
		if !hasMesh(leader.testNode, victim.Name) {
			return "not applied"
		}
		return ""
	})
}

// TestLeaderRestartKeepsState: the harness's stores outlive a replica, like
// a data dir; a restarted leader rejoins with everything committed.
func TestLeaderRestartKeepsState(t *testing.T) {
	c := newMemCluster(t, 3)
	leader := c.leader()
	applyOK(t, c.followers(leader)[0], meshPut(t, victim.Name))
	back := c.restart(leader)
	applyOK(t, c.leader(), meshPut(t, "after"))
	eventually(t, 5*time.Second, "the restarted replica catches up", func() string {
		if !hasMesh(back.testNode, victim.Name) || !hasMesh(back.testNode, "after") {
			return "missing meshes"
		}
		return ""
	})
}

// TestWriteVisibleWhereAnswered: a write forwarded by a follower is answered
// once committed; reads on that follower (after WaitVisible) show it.
func TestWriteVisibleWhereAnswered(t *testing.T) {
	c := newMemCluster(t, 3)
	follower := c.followers(c.leader())[0]
	ctx := context.Background()
	for i := range 20 {
		name := fmt.Sprintf("m-%d", i)
		res := applyOK(t, follower, meshPut(t, name))
		if err := follower.WaitVisible(ctx); err != nil {
			t.Fatalf("wait visible: %v", err)
		}
		if r, ok := follower.state.Get(resource.Key{Type: resource.TypeMesh, Name: name}); !ok || r.Version != res.Index {
			t.Fatalf("%s not visible on the follower that answered it (applied %d, entry %d)", name, follower.state.AppliedIndex(), res.Index)
		}
	}
}

// TestWaitVisibleBounded: a follower that hears nothing from the leader after
// its forwarded write was answered does not serve reads without it for ever:
// WaitVisible gives up with ErrNoQuorum, and succeeds once Raft reaches it.
func TestWaitVisibleBounded(t *testing.T) {
	c := newMemCluster(t, 3, func(cfg *Config) {
		cfg.ApplyTimeout = 300 * time.Millisecond
		// The cut follower must not start elections meanwhile.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, time.Second
	})
	leader := c.leader()
	follower := c.followers(leader)[0]
	c.net.cutRaft(leader.host, follower.host)
	applyOK(t, follower, meshPut(t, victim.Name)) // committed with the other follower
	if err := follower.WaitVisible(context.Background()); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("wait visible while cut off: %v; want ErrNoQuorum", err)
	}
	c.net.heal()
	eventually(t, 5*time.Second, "visible after the cut heals", func() string {
		if err := follower.WaitVisible(context.Background()); err != nil {
			return err.Error()
		}
		return ""
	})
	if !hasMesh(follower.testNode, victim.Name) {
		t.Fatal("write not visible after WaitVisible")
	}
}

// TestConsistentReadAnswerLost: a read-index call whose answer is lost is
// "no quorum" for the read, never a write's "outcome unknown".
func TestConsistentReadAnswerLost(t *testing.T) {
	c := newMemCluster(t, 3)
	leader := c.leader()
	follower := c.followers(leader)[0]
	c.net.partition([]string{follower.host}, []string{leader.host})
	err := follower.ConsistentRead(context.Background())
	if !errors.Is(err, ErrNoQuorum) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("consistent read: %v; want ErrNoQuorum only", err)
	}
}
