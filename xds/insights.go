package xds

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Insight reports: every stream's DataplaneInsight subscription lives in
// memory and is written through the log in batches, never once per event.
// Connects, disconnects and NACKs go out within min(InsightFlush/4, 250ms);
// counters (responses, ACKs) at most once per InsightFlush and stream: a
// stream's next counters-only report is due InsightFlush plus a random
// part of up to a quarter of it after its last one, so that the reports of
// thousands of proxies that connected together spread out instead of all
// going through the log (and every replica's apply) in the same instant.

// maxReportsPerEntry bounds one log entry.
const maxReportsPerEntry = 500

func (s *Server) runReporter(ctx context.Context) {
	fast := max(min(s.opts.InsightFlush/4, 250*time.Millisecond), 10*time.Millisecond)
	t := time.NewTicker(fast)
	defer t.Stop()
	lastReopen := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			// Let a burst of connects gather before writing.
			select {
			case <-ctx.Done():
				return
			case <-time.After(fast):
			}
		}
		if time.Since(lastReopen) >= s.opts.InsightFlush {
			s.reopenClosedByLeader()
			lastReopen = time.Now()
		}
		s.flush(ctx, false)
	}
}

// nextReportDue is when a stream reported now may next report counters only.
func (s *Server) nextReportDue(now time.Time) time.Time {
	return now.Add(s.opts.InsightFlush + rand.N(s.opts.InsightFlush/4+1))
}

// flush writes the dirty subscriptions that are urgent or due (every one
// if final). On failure the reports stay dirty and go out with a later
// flush (a newer report replaces an older one).
func (s *Server) flush(ctx context.Context, final bool) {
	s.mu.Lock()
	if len(s.mu.dirty) == 0 {
		s.mu.Unlock()
		return
	}
	now := time.Now()
	var (
		keys    []streamKey
		reports []fsm.InsightReport
		urgent  []bool
	)
	for k, st := range s.mu.dirty {
		if !final && !st.urgent && now.Before(st.due) {
			continue
		}
		delete(s.mu.dirty, k)
		urgent = append(urgent, st.urgent)
		st.urgent, st.due = false, s.nextReportDue(now)
		st.sub.Generation++
		if len(st.versions) > 0 {
			st.sub.Status.ConfigVersion = configVersion(st.versions)
		}
		sub := st.sub
		reports = append(reports, fsm.InsightReport{Mesh: st.key.Mesh, Name: st.key.Name, Subscription: &sub})
		keys = append(keys, k)
	}
	s.mu.Unlock()
	if len(reports) == 0 {
		return
	}

	var failed []int
	for i := 0; i < len(reports); i += maxReportsPerEntry {
		j := min(i+maxReportsPerEntry, len(reports))
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := s.opts.Cluster.Apply(actx, fsm.Command{Type: fsm.CmdInsights,
			Insights: &fsm.InsightsCommand{Reports: reports[i:j]}})
		cancel()
		if err == nil {
			err = res.Err
		}
		if err != nil {
			s.m.insightWrites.WithLabelValues("error").Inc()
			if errors.Is(err, ErrUnsupported) {
				s.log.Debug("insights not written: a replica runs an older protocol", "err", err)
				continue // dropped: an old replica could not apply them
			}
			if !final {
				s.log.Debug("insight reports not written; will retry", "reports", j-i, "err", err)
			}
			for k := i; k < j; k++ {
				failed = append(failed, k)
			}
			continue
		}
		s.m.insightWrites.WithLabelValues("ok").Inc()
	}
	if len(failed) == 0 || final {
		return
	}
	s.mu.Lock()
	for _, i := range failed {
		k := keys[i]
		if _, newer := s.mu.dirty[k]; newer {
			continue
		}
		if st := s.mu.streams[k]; st != nil {
			st.urgent = st.urgent || urgent[i]
			s.mu.dirty[k] = st
		} else if reports[i].Subscription.DisconnectTime != nil {
			// The stream is gone; keep its final report until it lands.
			s.mu.dirty[k] = &stream{key: resource.Key{Type: resource.TypeDataplane, Mesh: reports[i].Mesh, Name: reports[i].Name},
				hasNode: true, closed: true, urgent: true, sub: *reports[i].Subscription}
		}
	}
	s.mu.Unlock()
}

// reopenClosedByLeader re-reports open streams that the replicated state
// shows closed: the leader marked them offline while this replica was
// partitioned away or looked dead, but the proxies are still here.
func (s *Server) reopenClosedByLeader() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, st := range s.mu.streams {
		if !st.hasNode || st.closed {
			continue
		}
		if _, pending := s.mu.dirty[k]; pending {
			continue
		}
		r, ok := s.opts.State.Get(resource.Key{Type: resource.TypeDataplaneInsight, Mesh: st.key.Mesh, Name: st.key.Name})
		if !ok {
			continue
		}
		spec, _ := r.Spec.(*resource.DataplaneInsightSpec)
		if spec == nil {
			continue
		}
		for _, sub := range spec.Subscriptions {
			if sub.ID == st.sub.ID && !sub.Online() {
				s.mu.dirty[k] = st
				st.urgent = true
			}
		}
	}
}

// ProxyCounts returns how many proxies the replicated insights show online
// on each replica.
func ProxyCounts(state State) map[string]int {
	counts := map[string]int{}
	for _, r := range state.List(resource.TypeDataplaneInsight, "") {
		if spec, ok := r.Spec.(*resource.DataplaneInsightSpec); ok {
			if replica, online := spec.Online(); online {
				counts[replica]++
			}
		}
	}
	return counts
}
