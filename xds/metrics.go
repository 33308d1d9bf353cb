package xds

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	streams        prometheus.Gauge
	proxies        prometheus.GaugeFunc
	responses      *prometheus.CounterVec
	acks           *prometheus.CounterVec
	refreshSeconds prometheus.Histogram
	regenerated    prometheus.Counter
	clasBuilt      prometheus.Counter
	heldBehind     prometheus.Counter
	shed           prometheus.Counter
	registrations  *prometheus.CounterVec
	insightWrites  *prometheus.CounterVec

	// The children of responses and acks, resolved once (they are counted
	// for every response and request): by shortType index, then kind.
	responseBy [4]prometheus.Counter
	ackBy      [4][3]prometheus.Counter
}

var (
	shortTypes = [4]string{"lds", "cds", "eds", "other"}
	ackKinds   = [3]string{"initial", "ack", "nack"}
)

func typeIndex(typeURL string) int {
	switch typeURL {
	case typeLDS:
		return 0
	case typeCDS:
		return 1
	case typeEDS:
		return 2
	}
	return 3
}

// response counts a response of typeURL.
func (m *metrics) response(typeURL string) { m.responseBy[typeIndex(typeURL)].Inc() }

// request counts a request of typeURL: kind 0 initial, 1 ACK, 2 NACK.
func (m *metrics) request(typeURL string, kind int) { m.ackBy[typeIndex(typeURL)][kind].Inc() }

func newMetrics() *metrics {
	return (&metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kuma_xds_streams",
			Help: "Open ADS streams on this replica."}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kuma_xds_responses_total",
			Help: "xDS responses sent, by type."}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kuma_xds_requests_total",
			Help: "xDS requests received, by type and kind (ack, nack, initial)."}, []string{"type", "kind"}),
		refreshSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kuma_xds_refresh_seconds",
			Help:    "Time to regenerate what one batch of state changes touched.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		regenerated: prometheus.NewCounter(prometheus.CounterOpts{Name: "kuma_xds_proxy_generations_total",
			Help: "Proxy configs (listeners and clusters) regenerated."}),
		clasBuilt: prometheus.NewCounter(prometheus.CounterOpts{Name: "kuma_xds_load_assignments_built_total",
			Help: "Shared ClusterLoadAssignments built."}),
		heldBehind: prometheus.NewCounter(prometheus.CounterOpts{Name: "kuma_xds_held_behind_total",
			Help: "Answers held because the proxy had a newer version than this replica had applied."}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{Name: "kuma_xds_streams_shed_total",
			Help: "Streams closed to rebalance proxies across replicas."}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kuma_xds_registrations_total",
			Help: "Dataplanes registered by their proxies, by result."}, []string{"result"}),
		insightWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kuma_xds_insight_writes_total",
			Help: "Batched DataplaneInsight log entries written, by result."}, []string{"result"}),
	}).resolve()
}

func (m *metrics) resolve() *metrics {
	for i, t := range shortTypes {
		m.responseBy[i] = m.responses.WithLabelValues(t)
		for j, k := range ackKinds {
			m.ackBy[i][j] = m.acks.WithLabelValues(t, k)
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{m.streams, m.responses, m.acks, m.refreshSeconds, m.regenerated,
		m.clasBuilt, m.heldBehind, m.shed, m.registrations, m.insightWrites}
	if m.proxies != nil {
		cs = append(cs, m.proxies)
	}
	return cs
}
