package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Proxy connection state (DataplaneInsight) and the change indexes the xDS
// layer derives its versions from.

// LabelRegisteredBy marks a Dataplane its proxy registered itself (through
// xDS node metadata). Only such Dataplanes are removed when their proxy is
// gone; ones created through the API never are.
const (
	LabelRegisteredBy   = "kuma.io/registered-by"
	RegisteredByProxy   = "proxy"
	insightType         = resource.TypeDataplaneInsight
	changeIndexPrefix   = "changed\x00"
	serviceIndexPrefix  = "changed-service\x00"
	insightsPayloadV    = 1
	deregisterPayloadV  = 1
	errNoInsightsReport = "insights: no reports and no offline marks"
)

// InsightsCommand records, in one log entry, what replicas observed about
// their xDS streams: batched so that thousands of proxies do not flood the log.
type InsightsCommand struct {
	Reports []InsightReport `json:"reports,omitempty"`
	Offline []OfflineMark   `json:"offline,omitempty"`
}

// InsightReport is one subscription's current state, from the replica that
// holds the stream. Reports for a Dataplane that does not exist are ignored.
type InsightReport struct {
	Mesh         string                          `json:"mesh"`
	Name         string                          `json:"name"`
	Subscription *resource.DiscoverySubscription `json:"subscription"`
}

// OfflineMark closes (at the command's time) every open subscription held
// by Replica, except those of its run KeepInstance: the leader writes it
// when a replica died or restarted without closing its streams.
type OfflineMark struct {
	Replica      string `json:"replica"`
	KeepInstance string `json:"keepInstance,omitempty"`
}

// DeregisterCommand removes a proxy-registered Dataplane (and its insight)
// if, at the command's time, its insight shows no open stream for Grace. A
// Dataplane without an insight is kept: nothing says its proxy is gone.
// The state machine checks this itself, so a proxy that reconnected to any
// replica before the entry is applied keeps its Dataplane.
type DeregisterCommand struct {
	Key   resource.Key
	Grace time.Duration
}

// ErrProxyOnline rejects a deregistration whose proxy came back.
var ErrProxyOnline = errors.New("proxy is connected or was seen within the grace period")

type insightsPayloadV1 struct {
	V    int       `json:"v"`
	Time time.Time `json:"time"`
	InsightsCommand
}

func encodeInsights(c Command) ([]byte, error) {
	if c.Insights == nil || (len(c.Insights.Reports) == 0 && len(c.Insights.Offline) == 0) {
		return nil, errors.New(errNoInsightsReport)
	}
	return json.Marshal(insightsPayloadV1{V: insightsPayloadV, Time: c.Time.UTC(), InsightsCommand: *c.Insights})
}

func decodeInsights(payload []byte, c *Command) error {
	var p insightsPayloadV1
	if err := decodeVersioned(payload, &p, insightsPayloadV); err != nil {
		return err
	}
	for i, r := range p.Reports {
		if r.Mesh == "" || r.Name == "" || r.Subscription == nil || r.Subscription.ID == "" {
			return fmt.Errorf("insights: report %d needs mesh, name and a subscription with an id", i)
		}
	}
	for i, m := range p.Offline {
		if m.Replica == "" {
			return fmt.Errorf("insights: offline mark %d needs a replica", i)
		}
	}
	c.Time = p.Time.UTC()
	c.Insights = &p.InsightsCommand
	return nil
}

type deregisterPayloadV1 struct {
	V     int           `json:"v"`
	Time  time.Time     `json:"time"`
	Mesh  string        `json:"mesh"`
	Name  string        `json:"name"`
	Grace time.Duration `json:"grace"`
}

func encodeDeregister(c Command) ([]byte, error) {
	if c.Deregister == nil {
		return nil, errors.New("deregister: missing key")
	}
	k := c.Deregister.Key
	if k.Type != dataplaneType {
		return nil, fmt.Errorf("deregister: %s is not a Dataplane", k)
	}
	return json.Marshal(deregisterPayloadV1{V: deregisterPayloadV, Time: c.Time.UTC(), Mesh: k.Mesh, Name: k.Name, Grace: c.Deregister.Grace})
}

func decodeDeregister(payload []byte, c *Command) error {
	var p deregisterPayloadV1
	if err := decodeVersioned(payload, &p, deregisterPayloadV); err != nil {
		return err
	}
	if p.Mesh == "" || p.Name == "" || p.Grace < 0 {
		return errors.New("deregister: needs mesh, name and a non-negative grace")
	}
	c.Time = p.Time.UTC()
	c.Deregister = &DeregisterCommand{Key: resource.Key{Type: dataplaneType, Mesh: p.Mesh, Name: p.Name}, Grace: p.Grace}
	return nil
}

func insightKey(mesh, name string) resource.Key {
	return resource.Key{Type: insightType, Mesh: mesh, Name: name}
}

func (f *FSM) applyInsights(index uint64, t time.Time, c *InsightsCommand) (*Result, []Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.mu.st
	changed := map[resource.Key]*resource.DataplaneInsightSpec{}
	current := func(k resource.Key) *resource.DataplaneInsightSpec {
		if s, ok := changed[k]; ok {
			return s
		}
		if r, ok := st.byKey[k]; ok {
			if s, ok := r.Spec.(*resource.DataplaneInsightSpec); ok {
				return s
			}
		}
		return &resource.DataplaneInsightSpec{}
	}
	for _, rep := range c.Reports {
		if _, ok := st.byKey[resource.Key{Type: dataplaneType, Mesh: rep.Mesh, Name: rep.Name}]; !ok {
			continue
		}
		k := insightKey(rep.Mesh, rep.Name)
		changed[k] = current(k).Merge(rep.Subscription)
	}
	if len(c.Offline) > 0 {
		for k := range st.byKey {
			if k.Type != insightType {
				continue
			}
			spec := current(k)
			closed := false
			for _, m := range c.Offline {
				if next, ok := spec.MarkOfflineExcept(m.Replica, m.KeepInstance, t); ok {
					spec, closed = next, true
				}
			}
			if closed {
				changed[k] = spec
			}
		}
	}
	var changes []Change
	for k, spec := range changed {
		r := &resource.Resource{Meta: resource.Meta{Type: insightType, Mesh: k.Mesh, Name: k.Name,
			Version: index, CreationTime: t, ModificationTime: t}, Spec: spec}
		if old, ok := st.byKey[k]; ok {
			r.CreationTime = old.CreationTime
		}
		st.put(r)
		st.touch(index, nil, r)
		changes = append(changes, Change{Key: k, Index: index})
	}
	sortChanges(changes)
	return &Result{Index: index}, changes
}

func (f *FSM) applyDeregister(index uint64, t time.Time, d *DeregisterCommand) (*Result, []Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.mu.st
	k := d.Key
	dp, ok := st.byKey[k]
	if !ok {
		return &Result{Index: index, Err: fmt.Errorf("deregister %s: %w", k, ErrNotFound)}, nil
	}
	if dp.Labels[LabelRegisteredBy] != RegisteredByProxy {
		return &Result{Index: index, Err: fmt.Errorf("deregister %s: not registered by its proxy (label %s): %w", k, LabelRegisteredBy, ErrConflict)}, nil
	}
	// Without a connection record nothing says the proxy is gone (its
	// replica may not have reported yet, or runs an older protocol): keep it.
	ik := insightKey(k.Mesh, k.Name)
	r, ok := st.byKey[ik]
	if !ok {
		return &Result{Index: index, Err: fmt.Errorf("deregister %s: no connection record: %w", k, ErrProxyOnline)}, nil
	}
	s, ok := r.Spec.(*resource.DataplaneInsightSpec)
	if !ok {
		return &Result{Index: index, Err: fmt.Errorf("deregister %s: connection record is %T: %w", k, r.Spec, ErrProxyOnline)}, nil
	}
	if replica, online := s.Online(); online {
		return &Result{Index: index, Err: fmt.Errorf("deregister %s: connected to %s: %w", k, replica, ErrProxyOnline)}, nil
	}
	lastSeen := dp.ModificationTime
	if ld := s.LastDisconnect(); ld.After(lastSeen) {
		lastSeen = ld
	}
	if t.Sub(lastSeen) < d.Grace {
		return &Result{Index: index, Err: fmt.Errorf("deregister %s: last seen %s before the entry, grace %s: %w", k, t.Sub(lastSeen), d.Grace, ErrProxyOnline)}, nil
	}
	changes := f.removeDataplane(index, k)
	return &Result{Index: index}, changes
}

// removeDataplane deletes a Dataplane and its insight. Caller holds mu.
func (f *FSM) removeDataplane(index uint64, k resource.Key) []Change {
	st := f.mu.st
	var changes []Change
	if old, ok := st.remove(k); ok {
		st.touch(index, old, nil)
		changes = append(changes, Change{Key: k, Deleted: true, Index: index})
	}
	ik := insightKey(k.Mesh, k.Name)
	if old, ok := st.remove(ik); ok {
		st.touch(index, old, nil)
		changes = append(changes, Change{Key: ik, Deleted: true, Index: index})
	}
	return changes
}

// touch records that old was replaced by cur (either may be nil) at index:
// the change index of its (type, mesh) and, for Dataplanes, of every service
// either one provides. Deletions count, so these indexes never go back.
func (s *state) touch(index uint64, old, cur *resource.Resource) {
	r := cur
	if r == nil {
		r = old
	}
	if r == nil {
		return
	}
	v := strconv.FormatUint(index, 10)
	s.markers[changeIndexPrefix+string(r.Type)+"\x00"+r.Mesh] = v
	if r.Type != dataplaneType {
		return
	}
	for _, x := range []*resource.Resource{old, cur} {
		if x == nil {
			continue
		}
		for _, svc := range activeSchema.dataplaneServices(x) {
			s.markers[serviceIndexPrefix+r.Mesh+"\x00"+svc] = v
		}
	}
}

func (s *state) markerIndex(key string) uint64 {
	v, err := strconv.ParseUint(s.markers[key], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func sortChanges(c []Change) {
	slices.SortFunc(c, func(x, y Change) int { return compareKeys(x.Key, y.Key) })
}

func (s *state) changeIndex(t resource.Type, mesh string) uint64 {
	return s.markerIndex(changeIndexPrefix + string(t) + "\x00" + mesh)
}

func (s *state) serviceIndex(mesh, service string) uint64 {
	return s.markerIndex(serviceIndexPrefix + mesh + "\x00" + service)
}
