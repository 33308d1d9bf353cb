package proxy

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// cluster is one cluster as the proxy runs it. It is immutable but for the
// state of its endpoints; Apply builds new clusters and carries that state
// over for endpoints that stay.
type cluster struct {
	name           string
	connectTimeout time.Duration
	lb             lbPolicy
	choices        int // LEAST_REQUEST: endpoints compared per pick
	endpoints      []*endpoint
	next           *atomic.Uint64 // round robin position, shared with the cluster's successors
}

type endpoint struct {
	addr         string
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 or past: not ejected
	active       atomic.Int64 // proxied connections
}

func (e *endpoint) ejected(now time.Time) bool { return e.ejectedUntil.Load() > now.UnixNano() }

// eject skips e until until; it reports whether e was not ejected before.
func (e *endpoint) eject(now, until time.Time) bool {
	prev := e.ejectedUntil.Swap(until.UnixNano())
	return prev <= now.UnixNano()
}

// newCluster builds the runtime form of spec, keeping the ejection state and
// round robin position of prev (the cluster of the same name, or nil).
func newCluster(spec *clusterSpec, prev *cluster) *cluster {
	c := &cluster{name: spec.name, connectTimeout: spec.connectTimeout, lb: spec.lb, choices: spec.choices}
	old := map[string]*endpoint{}
	if prev != nil {
		c.next = prev.next
		for _, e := range prev.endpoints {
			old[e.addr] = e
		}
	} else {
		c.next = new(atomic.Uint64)
	}
	for _, addr := range spec.endpoints {
		e := old[addr]
		if e == nil {
			e = &endpoint{addr: addr}
		} else {
			delete(old, addr) // a repeated address gets its own state
		}
		c.endpoints = append(c.endpoints, e)
	}
	return c
}

// attempts returns the endpoints to try for one connection, in order: those
// not ejected, starting where the load balancer points, then the ejected
// ones (when every endpoint is ejected Envoy ignores ejection: panic mode;
// trying them last also means a connection fails only once every endpoint
// has failed).
func (c *cluster) attempts(now time.Time) []*endpoint {
	n := len(c.endpoints)
	if n == 0 {
		return nil
	}
	var start int
	switch c.lb {
	case lbRandom, lbHash:
		start = rand.IntN(n)
	case lbLeastRequest:
		start = c.leastRequest(now)
	default:
		start = int(c.next.Add(1)-1) % n
	}
	out := make([]*endpoint, 0, n)
	var ejected []*endpoint
	for i := range n {
		e := c.endpoints[(start+i)%n]
		if e.ejected(now) {
			ejected = append(ejected, e)
			continue
		}
		out = append(out, e)
	}
	return append(out, ejected...)
}

// leastRequest picks the index of the least busy of c.choices endpoints
// drawn at random, skipping ejected ones (Envoy's choice_count, 2 unless the
// cluster sets it). With at least as many choices as endpoints it compares
// every endpoint once, from a random start, so ties are broken at random.
func (c *cluster) leastRequest(now time.Time) int {
	n := len(c.endpoints)
	best := -1
	consider := func(i int) {
		if c.endpoints[i].ejected(now) {
			return
		}
		if best < 0 || c.endpoints[i].active.Load() < c.endpoints[best].active.Load() {
			best = i
		}
	}
	if choices := max(c.choices, defaultChoiceCount); choices >= n {
		start := rand.IntN(n)
		for k := range n {
			consider((start + k) % n)
		}
	} else {
		for range choices {
			consider(rand.IntN(n))
		}
	}
	if best < 0 {
		return rand.IntN(n)
	}
	return best
}

// route is a listener's routing, swapped whole by Apply: new connections
// take the route current when they are accepted.
type route struct {
	dir      string
	reject   bool     // no filter: close every connection
	cluster  *cluster // single cluster; nil with weighted or when missing
	name     string   // the single cluster's name
	weighted *weightedClusters
	idle     time.Duration
}

// weightedClusters picks clusters by smooth weighted round robin (nginx's):
// exact proportions over every sum-of-weights connections, well interleaved.
type weightedClusters struct {
	clusters []*cluster // nil where the cluster is missing
	names    []string
	weights  []int64
	total    int64
	mu       sync.Mutex
	current  []int64
}

// pick returns the cluster for a new connection and its name; the cluster
// is nil when the config names a cluster it does not define.
func (r *route) pick() (*cluster, string) {
	if r.weighted == nil {
		return r.cluster, r.name
	}
	w := r.weighted
	w.mu.Lock()
	best := 0
	for i := range w.current {
		w.current[i] += w.weights[i]
		if w.current[i] > w.current[best] {
			best = i
		}
	}
	w.current[best] -= w.total
	w.mu.Unlock()
	return w.clusters[best], w.names[best]
}

// newRoute builds the route of spec; prev is the listener's current route
// (or nil), whose weighted round robin position carries over when the
// weights are the same, so that frequent updates do not skew the split.
func newRoute(spec *listenerSpec, clusters map[string]*cluster, prev *route) *route {
	r := &route{dir: spec.dir, reject: spec.tcp.reject, idle: spec.tcp.idle}
	if spec.tcp.weighted == nil {
		r.name, r.cluster = spec.tcp.cluster, clusters[spec.tcp.cluster]
		return r
	}
	w := &weightedClusters{current: make([]int64, len(spec.tcp.weighted))}
	for _, ws := range spec.tcp.weighted {
		w.clusters = append(w.clusters, clusters[ws.cluster])
		w.names = append(w.names, ws.cluster)
		w.weights = append(w.weights, int64(ws.weight))
		w.total += int64(ws.weight)
	}
	if prev != nil && prev.weighted != nil && slices.Equal(prev.weighted.names, w.names) && slices.Equal(prev.weighted.weights, w.weights) {
		prev.weighted.mu.Lock()
		copy(w.current, prev.weighted.current)
		prev.weighted.mu.Unlock()
	}
	r.weighted = w
	return r
}
