package xds

import (
	"context"
	"errors"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// The leader's once-per-cluster duties for proxies:
//
//   - close the recorded streams of a replica that gossip declared dead (for
//     DeadReplicaGrace) or that restarted (its instance changed), so its
//     proxies do not stay Online forever;
//   - remove a Dataplane that its proxy registered once that proxy has had no
//     stream to any replica for DeregisterGrace. The decision uses only the
//     replicated insights, which every replica reports into, so a proxy that
//     moved to another replica is never removed; and the state machine checks
//     it again when the entry is applied, so a reconnect that lands first wins.

// maxDeregisterPerTick bounds the removals one pass proposes.
const maxDeregisterPerTick = 100

func (s *Server) runLifecycle(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	deadSince := map[string]time.Time{}
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.closeStreamsOfGoneReplicas(ctx, start, deadSince)
		s.deregisterGone(ctx)
	}
}

func (s *Server) closeStreamsOfGoneReplicas(ctx context.Context, start time.Time, deadSince map[string]time.Time) {
	now := time.Now()
	members := map[string]string{} // alive replica -> instance
	known := map[string]bool{}
	for _, m := range s.opts.Cluster.Members() {
		known[m.Name] = true
		if m.Alive {
			members[m.Name] = m.Instance
			delete(deadSince, m.Name)
		} else if _, ok := deadSince[m.Name]; !ok {
			deadSince[m.Name] = now
		}
	}
	marks := map[string]fsm.OfflineMark{}
	for _, r := range s.opts.State.List(resource.TypeDataplaneInsight, "") {
		spec, _ := r.Spec.(*resource.DataplaneInsightSpec)
		if spec == nil {
			continue
		}
		for _, sub := range spec.Subscriptions {
			if !sub.Online() {
				continue
			}
			replica := sub.ControlPlaneInstanceID
			if inst, alive := members[replica]; alive {
				if inst != "" && sub.ReplicaInstance != "" && sub.ReplicaInstance != inst {
					marks[replica] = fsm.OfflineMark{Replica: replica, KeepInstance: inst}
				}
				continue
			}
			since, dead := deadSince[replica]
			if !dead && !known[replica] {
				since = start // never seen by this leader: count from its election
			}
			if now.Sub(since) >= s.opts.DeadReplicaGrace {
				marks[replica] = fsm.OfflineMark{Replica: replica}
			}
		}
	}
	if len(marks) == 0 {
		return
	}
	cmd := &fsm.InsightsCommand{}
	for _, m := range marks {
		cmd.Offline = append(cmd.Offline, m)
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := s.opts.Cluster.Apply(actx, fsm.Command{Type: fsm.CmdInsights, Insights: cmd})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		s.log.Warn("cannot close the streams of gone replicas", "err", err)
		return
	}
	for _, m := range cmd.Offline {
		s.log.Info("marked the proxies of a gone replica offline", "replica", m.Replica, "kept_instance", m.KeepInstance)
	}
}

func (s *Server) deregisterGone(ctx context.Context) {
	now := time.Now()
	grace := s.opts.DeregisterGrace
	n := 0
	for _, dp := range s.opts.State.List(resource.TypeDataplane, "") {
		if dp.Labels[fsm.LabelRegisteredBy] != fsm.RegisteredByProxy {
			continue
		}
		r, ok := s.opts.State.Get(resource.Key{Type: resource.TypeDataplaneInsight, Mesh: dp.Mesh, Name: dp.Name})
		if !ok {
			continue // no connection record yet: nothing says the proxy is gone
		}
		spec, _ := r.Spec.(*resource.DataplaneInsightSpec)
		if spec == nil {
			continue
		}
		if _, online := spec.Online(); online {
			continue
		}
		lastSeen := dp.ModificationTime
		if ld := spec.LastDisconnect(); ld.After(lastSeen) {
			lastSeen = ld
		}
		if now.Sub(lastSeen) < grace {
			continue
		}
		if n++; n > maxDeregisterPerTick {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := s.opts.Cluster.Apply(actx, fsm.Command{Type: fsm.CmdDeregister,
			Deregister: &fsm.DeregisterCommand{Key: dp.Key(), Grace: grace}})
		cancel()
		if err == nil {
			err = res.Err
		}
		switch {
		case err == nil:
			s.log.Info("removed a Dataplane whose proxy is gone", "dataplane", dp.Key().String(), "last_seen", lastSeen, "grace", grace)
		case errors.Is(err, fsm.ErrProxyOnline), errors.Is(err, fsm.ErrNotFound):
		default:
			s.log.Warn("cannot remove a Dataplane whose proxy is gone", "dataplane", dp.Key().String(), "err", err)
			return
		}
	}
}
