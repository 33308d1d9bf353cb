package cluster

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are this replica's Prometheus collectors. Gauges read raft on
// scrape, so nothing runs in the background.
type metrics struct {
	commitLatency     prometheus.Histogram
	applyLatency      prometheus.Histogram
	leaderChanges     prometheus.Counter
	failureTolerance  atomic.Int64
	raftState         *prometheus.Desc
	term              *prometheus.Desc
	lastIndex         *prometheus.Desc
	commitIndex       *prometheus.Desc
	appliedIndex      *prometheus.Desc
	peers             *prometheus.Desc
	failureToleranceD *prometheus.Desc
	n                 *Node
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics(n *Node) *metrics {
	return &metrics{
		n: n,
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kuma_cp_raft_commit_latency_seconds",
			Help:    "Time from proposing a command (raft.Apply on the leader, or forwarding to it) until it is committed and applied on the leader.",
			Buckets: latencyBuckets,
		}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kuma_cp_raft_apply_latency_seconds",
			Help:    "Time of Node.Apply: from the call until the command is applied on this replica.",
			Buckets: latencyBuckets,
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kuma_cp_raft_leader_changes_total",
			Help: "Leader changes observed by this replica (including losing the leader).",
		}),
		raftState:         prometheus.NewDesc("kuma_cp_raft_state", "1 for this replica's current raft state.", []string{"state"}, nil),
		term:              prometheus.NewDesc("kuma_cp_raft_term", "Current raft term.", nil, nil),
		lastIndex:         prometheus.NewDesc("kuma_cp_raft_last_index", "Index of the last raft log entry.", nil, nil),
		commitIndex:       prometheus.NewDesc("kuma_cp_raft_commit_index", "Raft commit index.", nil, nil),
		appliedIndex:      prometheus.NewDesc("kuma_cp_raft_applied_index", "Index of the last entry applied to the state machine.", nil, nil),
		peers:             prometheus.NewDesc("kuma_cp_raft_peers", "Servers in the raft configuration, by suffrage.", []string{"suffrage"}, nil),
		failureToleranceD: prometheus.NewDesc("kuma_cp_raft_failure_tolerance", "How many voters may fail without losing quorum (leader only, from autopilot).", nil, nil),
	}
}

func (m *metrics) setFailureTolerance(v int) { m.failureTolerance.Store(int64(v)) }

// raftCollector reports the raft gauges.
type raftCollector struct{ m *metrics }

func (c raftCollector) Describe(ch chan<- *prometheus.Desc) {
	m := c.m
	for _, d := range []*prometheus.Desc{m.raftState, m.term, m.lastIndex, m.commitIndex, m.appliedIndex, m.peers, m.failureToleranceD} {
		ch <- d
	}
}

func (c raftCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	n := m.n
	if !n.running.Load() {
		return
	}
	r := n.raft
	cur := r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.raftState, prometheus.GaugeValue, v, s.String())
	}
	ch <- prometheus.MustNewConstMetric(m.term, prometheus.GaugeValue, float64(r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(m.lastIndex, prometheus.GaugeValue, float64(r.LastIndex()))
	ch <- prometheus.MustNewConstMetric(m.commitIndex, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(m.appliedIndex, prometheus.GaugeValue, float64(n.state.AppliedIndex()))
	voters, nonvoters := 0, 0
	if cfg, err := n.configuration(); err == nil {
		for _, s := range cfg.Servers {
			if s.Suffrage == raft.Voter {
				voters++
			} else {
				nonvoters++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(m.peers, prometheus.GaugeValue, float64(voters), "voter")
	ch <- prometheus.MustNewConstMetric(m.peers, prometheus.GaugeValue, float64(nonvoters), "nonvoter")
	ft := 0.0
	if cur == raft.Leader {
		ft = float64(m.failureTolerance.Load())
	}
	ch <- prometheus.MustNewConstMetric(m.failureToleranceD, prometheus.GaugeValue, ft)
}

// Collectors are the Prometheus collectors for Raft state, commit and apply latency.
func (n *Node) Collectors() []prometheus.Collector {
	return []prometheus.Collector{raftCollector{n.metrics}, n.metrics.commitLatency, n.metrics.applyLatency, n.metrics.leaderChanges}
}
