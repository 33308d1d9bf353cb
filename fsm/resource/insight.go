package resource

import (
	"cmp"
	"slices"
	"time"
)

// TypeDataplaneInsight records which control plane replicas a Dataplane's
// proxy is and was connected to. Replicas write it (in batches, through the
// log); the API only reads it.
const TypeDataplaneInsight Type = "DataplaneInsight"

func init() {
	register(&Descriptor{Type: TypeDataplaneInsight, Plural: "dataplane-insights", Scope: ScopeMesh, ReadOnly: true,
		NewSpec: func() Spec { return &DataplaneInsightSpec{} }})
}

// MaxSubscriptions is how many subscriptions an insight keeps: the newest
// by connect time (Kuma keeps a short history too).
const MaxSubscriptions = 5

// DataplaneInsightSpec is Kuma's DataplaneInsight: one entry per xDS stream.
type DataplaneInsightSpec struct {
	Subscriptions []*DiscoverySubscription `json:"subscriptions,omitempty"`
}

// DiscoverySubscription is one xDS stream of a proxy to one replica.
type DiscoverySubscription struct {
	ID string `json:"id"`
	// ControlPlaneInstanceID is the replica's name (Kuma: the instance id).
	ControlPlaneInstanceID string `json:"controlPlaneInstanceId"`
	// ReplicaInstance tells two runs of the same replica apart, so that
	// streams of a replica that restarted can be found and closed.
	ReplicaInstance string          `json:"replicaInstance,omitempty"`
	ConnectTime     time.Time       `json:"connectTime"`
	DisconnectTime  *time.Time      `json:"disconnectTime,omitempty"`
	Status          DiscoveryStatus `json:"status"`
	// Generation increases with every report of the owning replica; a
	// report older than the stored one is ignored.
	Generation uint64 `json:"generation,omitempty"`
}

// Online reports whether the stream is still open.
func (s *DiscoverySubscription) Online() bool { return s.DisconnectTime == nil }

// DiscoveryStatus counts responses on one stream.
type DiscoveryStatus struct {
	LastUpdateTime *time.Time     `json:"lastUpdateTime,omitempty"`
	Total          DiscoveryStats `json:"total"`
	CDS            DiscoveryStats `json:"cds"`
	EDS            DiscoveryStats `json:"eds"`
	LDS            DiscoveryStats `json:"lds"`
	ConfigVersion  string         `json:"configVersion,omitempty"` // last versions sent: "lds=V cds=V eds=V"
	LastACK        *time.Time     `json:"lastAckTime,omitempty"`
	LastNACK       *time.Time     `json:"lastNackTime,omitempty"`
	LastNACKError  string         `json:"lastNackError,omitempty"`
}

// DiscoveryStats are Kuma's per-type response counters.
type DiscoveryStats struct {
	ResponsesSent         uint64 `json:"responsesSent"`
	ResponsesAcknowledged uint64 `json:"responsesAcknowledged"`
	ResponsesRejected     uint64 `json:"responsesRejected"`
}

func (s *DataplaneInsightSpec) Default()                   {}
func (s *DataplaneInsightSpec) Validate() ValidationErrors { return nil }

// Online reports whether any subscription is open, and the replica of the
// newest open one.
func (s *DataplaneInsightSpec) Online() (replica string, online bool) {
	var best *DiscoverySubscription
	for _, sub := range s.Subscriptions {
		if sub.Online() && (best == nil || sub.ConnectTime.After(best.ConnectTime)) {
			best = sub
		}
	}
	if best == nil {
		return "", false
	}
	return best.ControlPlaneInstanceID, true
}

// LastDisconnect is the latest disconnect time of any subscription (zero
// when there is none).
func (s *DataplaneInsightSpec) LastDisconnect() time.Time {
	var t time.Time
	for _, sub := range s.Subscriptions {
		if sub.DisconnectTime != nil && sub.DisconnectTime.After(t) {
			t = *sub.DisconnectTime
		}
	}
	return t
}

// Latest is the subscription with the newest connect time, or nil.
func (s *DataplaneInsightSpec) Latest() *DiscoverySubscription {
	var best *DiscoverySubscription
	for _, sub := range s.Subscriptions {
		if best == nil || sub.ConnectTime.After(best.ConnectTime) {
			best = sub
		}
	}
	return best
}

// Merge returns a new spec with the report applied: a report replaces the
// subscription with the same ID when its Generation is higher (the owning
// replica numbers its reports), so a stale report never undoes a newer one,
// and the owner can reopen a stream the leader closed by mistake (it was
// partitioned, not dead). Only the MaxSubscriptions newest subscriptions are
// kept. s is not modified.
func (s *DataplaneInsightSpec) Merge(report *DiscoverySubscription) *DataplaneInsightSpec {
	out := &DataplaneInsightSpec{Subscriptions: make([]*DiscoverySubscription, 0, len(s.Subscriptions)+1)}
	found := false
	for _, sub := range s.Subscriptions {
		if sub.ID != report.ID {
			out.Subscriptions = append(out.Subscriptions, sub)
			continue
		}
		found = true
		if report.Generation <= sub.Generation {
			out.Subscriptions = append(out.Subscriptions, sub)
			continue
		}
		r := *report
		out.Subscriptions = append(out.Subscriptions, &r)
	}
	if !found {
		r := *report
		out.Subscriptions = append(out.Subscriptions, &r)
	}
	sortSubscriptions(out.Subscriptions)
	if len(out.Subscriptions) > MaxSubscriptions {
		out.Subscriptions = out.Subscriptions[len(out.Subscriptions)-MaxSubscriptions:]
	}
	return out
}

// MarkOfflineExcept returns a new spec with every open subscription of
// replica closed at t, except those of the replica's run keepInstance ("" keeps
// none), and whether anything changed. s is not modified.
func (s *DataplaneInsightSpec) MarkOfflineExcept(replica, keepInstance string, t time.Time) (*DataplaneInsightSpec, bool) {
	out := &DataplaneInsightSpec{Subscriptions: make([]*DiscoverySubscription, len(s.Subscriptions))}
	changed := false
	for i, sub := range s.Subscriptions {
		out.Subscriptions[i] = sub
		if sub.Online() && sub.ControlPlaneInstanceID == replica && (keepInstance == "" || sub.ReplicaInstance != keepInstance) {
			c := *sub
			tt := t
			c.DisconnectTime = &tt
			out.Subscriptions[i] = &c
			changed = true
		}
	}
	return out, changed
}

// sortSubscriptions orders by connect time, then ID (deterministic).
func sortSubscriptions(subs []*DiscoverySubscription) {
	slices.SortFunc(subs, func(a, b *DiscoverySubscription) int {
		if c := a.ConnectTime.Compare(b.ConnectTime); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
