package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/api"
	"github.com/kuma-ha/kuma-ha/chaos/backend"
	"github.com/kuma-ha/kuma-ha/chaos/check"
)

// clusterView asks the replicas about the cluster (for the nemesis and the
// recovery checker).
type clusterView struct {
	b backend.Backend
	c *api.Client
}

func newClusterView(b backend.Backend) *clusterView {
	return &clusterView{b: b, c: api.NewClient(2 * time.Second)}
}

func (v *clusterView) responsive() []backend.Node {
	var out []backend.Node
	for _, n := range v.b.Nodes() {
		if v.b.Running(n.Name) && !v.b.Paused(n.Name) {
			out = append(out, n)
		}
	}
	return out
}

// Leader returns the leader named by a majority of all replicas.
func (v *clusterView) Leader(ctx context.Context) (string, error) {
	nodes := v.b.Nodes()
	votes := map[string]int{}
	for _, n := range v.responsive() {
		st, err := v.c.Status(ctx, n.API)
		if err != nil || st.Leader == "" {
			continue
		}
		votes[st.Leader]++
	}
	for l, c := range votes {
		if c > len(nodes)/2 && slices.ContainsFunc(nodes, func(n backend.Node) bool { return n.Name == l }) {
			return l, nil
		}
	}
	return "", fmt.Errorf("no leader named by a majority (votes %v)", votes)
}

// poll asks every replica once (in parallel would hide a paused one's
// timeout behind others; sequential is fine for 3-5 replicas).
func (v *clusterView) poll(ctx context.Context, at func() int64) check.Poll {
	p := check.Poll{}
	for _, n := range v.b.Nodes() {
		view := check.View{Replica: n.Name}
		ready, reason := v.c.Ready(ctx, n.API)
		view.Ready = ready
		if !ready {
			view.Err = "not ready: " + reason
		}
		st, err := v.c.Status(ctx, n.API)
		if err != nil {
			if view.Err == "" {
				view.Err = err.Error()
			}
		} else {
			view.Leader = st.Leader
			if self, ok := st.Self(n.Name); ok {
				view.Role = self.Role
			}
			for _, r := range st.Replicas {
				if r.Healthy && r.Suffrage == "voter" {
					view.Healthy = append(view.Healthy, r.Name)
				}
			}
		}
		p.Views = append(p.Views, view)
	}
	p.At = at()
	return p
}

func (v *clusterView) names() []string {
	var out []string
	for _, n := range v.b.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

// WaitHealthy polls until one poll shows a recovered cluster.
func (v *clusterView) WaitHealthy(ctx context.Context) error {
	rec := check.Recovery{Replicas: v.names()}
	last := ""
	for {
		p := v.poll(ctx, func() int64 { return 0 })
		rec.Polls = []check.Poll{p}
		verdict := check.Recovered(rec)
		if verdict.Result == check.Pass {
			return nil
		}
		if len(verdict.Problems) > 0 {
			last = verdict.Problems[0]
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a healthy cluster: %w (%s)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// observeRecovery polls every interval from healedAt until the cluster has
// been recovered for stable, or bound plus a margin has passed.
func (v *clusterView) observeRecovery(ctx context.Context, rec *check.Recovery, now func() int64, stable time.Duration) {
	deadline := time.Now().Add(rec.Bound + 15*time.Second)
	var since time.Time
	for time.Now().Before(deadline) && ctx.Err() == nil {
		p := v.poll(ctx, now)
		rec.Polls = append(rec.Polls, p)
		probe := check.Recovery{Replicas: rec.Replicas, Polls: []check.Poll{p}, Bound: time.Hour}
		if check.Recovered(probe).Result == check.Pass {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= stable {
				return
			}
		} else {
			since = time.Time{}
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// collectStates reads every replica's full state once they all report the
// same applied index, retrying while the index moves.
func (v *clusterView) collectStates(ctx context.Context) []check.ReplicaState {
	c := api.NewClient(30 * time.Second)
	defer c.Close()
	var out []check.ReplicaState
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		out = out[:0]
		indexes := map[uint64]bool{}
		for _, n := range v.b.Nodes() {
			st, err := c.FullState(ctx, n.API)
			if err != nil {
				out = append(out, check.ReplicaState{Replica: n.Name, Err: err.Error()})
				continue
			}
			indexes[st.Index] = true
			out = append(out, check.ReplicaState{Replica: n.Name, Index: st.Index, Digest: st.Digest, Resources: st.Resources})
		}
		failed := slices.ContainsFunc(out, func(s check.ReplicaState) bool { return s.Err != "" })
		if !failed && len(indexes) == 1 {
			return out
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return out
}

var errInterrupted = errors.New("interrupted")
