package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
	"github.com/kuma-ha/kuma-ha/xds/envoy"
)

// The cache is this replica's view of what every proxy connected to it
// should have. It implements go-control-plane's cache.Cache itself instead of
// using SnapshotCache or LinearCache, for three reasons:
//
//   - versions must be the same on every replica for the same state (they are
//     derived from change indexes, see version.go), not per-cache counters;
//   - a ClusterLoadAssignment is built and marshalled once per service and
//     shared by every proxy that needs it;
//   - a watch from a proxy that has a newer version than this replica has
//     applied is held until the replica catches up (never back in time).
//
// Every watch answers at most once (the server opens a new one on the next
// request, as with go-control-plane's own caches).

var (
	typeLDS = resourcev3.ListenerType
	typeCDS = resourcev3.ClusterType
	typeEDS = resourcev3.EndpointType
)

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// errNoDataplane: the proxy's Dataplane does not exist (yet).
var errNoDataplane = errors.New("dataplane not found")

// typeSet is one proxy's generated resources of one type.
type typeSet struct {
	version  string
	index    uint64
	*setBody // may be shared with other proxies (see intern.go): read only
}

// setBody is what a typeSet holds.
type setBody struct {
	names  []string // sorted
	res    map[string]*anypb.Any
	sum    uint64 // hash of the names and bytes (the version's second part)
	shared string // its key in the interned sets, if it is there
}

// proxy is one Dataplane with at least one stream on this replica.
type proxy struct {
	key      resource.Key
	streams  int
	inputIdx uint64   // change index the current config was generated at
	readSeq  uint64   // read ticket of the installed config (see generated.seq)
	err      error    // why there is no config (errNoDataplane, a generator error)
	warnings []string // the generator's warnings for the installed config, logged when they change
	lds, cds *typeSet
	eps      []envoy.EndpointRef
	eds      *edsView // what EDS watches see, until p.eps or one of its load assignments changes
	watches  map[*watch]struct{}
	lastSent map[string]string // type URL -> version of the last SotW response (not resent after a NACK)
}

// cla is one shared ClusterLoadAssignment.
type cla struct {
	ref     envoy.EndpointRef
	index   uint64
	version string
	any     *anypb.Any
	users   int
	proxies map[*proxy]struct{}
}

type claKey struct{ mesh, cluster string }

type watch struct {
	p       *proxy
	typeURL string
	req     *discovery.DiscoveryRequest      // sotw
	dreq    *discovery.DeltaDiscoveryRequest // delta
	sub     cache.Subscription
	need    uint64 // applied index needed before answering (minIndex)
	ch      chan cache.Response
	dch     chan cache.DeltaResponse
}

// Cache implements cache.Cache over the replicated state.
type Cache struct {
	state State
	log   *slog.Logger
	m     *metrics

	// readSeq orders the views generations read: a ticket taken inside
	// state.Read, so a higher ticket saw the same or a newer state.
	readSeq atomic.Uint64
	// genHook, if set, runs in every proxy generation after the state was
	// read and before the result is installed, without mu (tests).
	genHook atomic.Pointer[func(resource.Key)]

	mu      sync.Mutex
	proxies map[resource.Key]*proxy
	clas    map[claKey]*cla
	held    map[*watch]struct{} // watches waiting for this replica to catch up
	interns interns             // listeners and clusters shared by proxies
}

// NewCache returns a cache over state. Run must be running for it to follow changes.
func NewCache(state State, log *slog.Logger, m *metrics) *Cache {
	if m == nil {
		m = newMetrics()
	}
	return &Cache{state: state, log: log, m: m, proxies: map[resource.Key]*proxy{}, clas: map[claKey]*cla{},
		held: map[*watch]struct{}{}, interns: newInterns()}
}

// ParseNodeID splits a node id "{mesh}.{name}" (at the first dot).
func ParseNodeID(id string) (resource.Key, error) {
	for i := 0; i < len(id); i++ {
		if id[i] == '.' {
			if i == 0 || i == len(id)-1 {
				break
			}
			return resource.Key{Type: resource.TypeDataplane, Mesh: id[:i], Name: id[i+1:]}, nil
		}
	}
	return resource.Key{}, fmt.Errorf("node id %q: want {mesh}.{name}", id)
}

// Attach counts a stream of the proxy k; Detach releases it.
func (c *Cache) Attach(k resource.Key) {
	c.mu.Lock()
	p := c.proxies[k]
	fresh := p == nil
	if fresh {
		p = &proxy{key: k, watches: map[*watch]struct{}{}, lastSent: map[string]string{}}
		c.proxies[k] = p
	}
	p.streams++
	c.mu.Unlock()
	if fresh {
		// Generated without mu; watches opened meanwhile wait in p.watches
		// and are answered when the config is installed. On a goroutine of
		// its own: generating and marshalling need a deep stack, which the
		// stream's goroutine would otherwise keep for the stream's life.
		var g generated
		done := make(chan struct{})
		go func() {
			defer close(done)
			g = c.generate(k)
		}()
		<-done
		c.mu.Lock()
		if c.install(p, g) {
			c.answer(p, "")
		}
		c.mu.Unlock()
	}
}

// Detach releases a stream of proxy k.
func (c *Cache) Detach(k resource.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proxies[k]
	if p == nil {
		return
	}
	p.streams--
	if p.streams > 0 {
		return
	}
	for w := range p.watches {
		delete(p.watches, w)
		delete(c.held, w)
	}
	c.setEndpoints(p, nil)
	c.interns.release(p.lds)
	c.interns.release(p.cds)
	delete(c.proxies, k)
}

// Proxies returns how many distinct proxies have streams here.
func (c *Cache) Proxies() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.proxies)
}

// Run follows the state until ctx ends: each batch of changes regenerates
// what it touched and answers the watches that were waiting for it.
func (c *Cache) Run(ctx context.Context) {
	sub := c.state.Subscribe()
	defer sub.Close()
	// A slow tick re-checks watches held for a lagging replica even when no
	// relevant change arrives (their applied index still moves).
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.C:
			b := sub.Next()
			if b.Reset || relevant(b.Changes) {
				c.refresh()
			} else {
				c.retryHeld()
			}
		case <-tick.C:
			c.retryHeld()
		}
	}
}

// relevant reports whether a batch can change any proxy's config.
func relevant(changes []fsm.Change) bool {
	for _, ch := range changes {
		switch ch.Key.Type {
		case resource.TypeDataplane, resource.TypeMesh, resource.TypeTrafficRoute, resource.TypeMeshTimeout:
			return true
		}
	}
	return false
}

// inputIndex is the change index a proxy's listeners and clusters depend on.
func inputIndex(v fsm.View, k resource.Key) (uint64, *envoy.Input, error) {
	dp, ok := v.Get(k)
	if !ok {
		return 0, nil, errNoDataplane
	}
	m, ok := v.Get(resource.Key{Type: resource.TypeMesh, Name: k.Mesh})
	if !ok {
		return 0, nil, fmt.Errorf("mesh %q not found", k.Mesh)
	}
	idx := max(dp.Version, m.Version, v.ChangeIndex(resource.TypeTrafficRoute, k.Mesh), v.ChangeIndex(resource.TypeMeshTimeout, k.Mesh))
	return idx, &envoy.Input{Mesh: m, Proxy: dp}, nil
}

// refresh regenerates every proxy and CLA whose inputs changed. Caller must
// not hold mu. Only finding what is stale and installing the results happen
// under mu; reading the state, generating and marshalling happen without it
// (in parallel), so stream opens and watches are not stalled by a mesh-wide
// change. A result is installed only if no newer one was installed meanwhile.
func (c *Cache) refresh() {
	start := time.Now()
	c.mu.Lock()
	var (
		stale     []*proxy
		staleCLAs []claKey
		claRefs   []envoy.EndpointRef
	)
	c.state.Read(func(v fsm.View) {
		for _, p := range c.proxies {
			idx, _, err := inputIndex(v, p.key)
			if idx != p.inputIdx || (err == nil) != (p.err == nil) {
				stale = append(stale, p)
			}
		}
		for k, e := range c.clas {
			if v.ServiceIndex(k.mesh, e.ref.Service) != e.index {
				staleCLAs = append(staleCLAs, k)
				claRefs = append(claRefs, e.ref)
			}
		}
	})
	c.mu.Unlock()

	gens := make([]generated, len(stale))
	cbuilt := make([]builtCLA, len(staleCLAs))
	parallel(len(stale)+len(staleCLAs), func(i int) {
		if i < len(stale) {
			gens[i] = c.generate(stale[i].key)
			return
		}
		i -= len(stale)
		cbuilt[i] = c.loadAssignment(staleCLAs[i], claRefs[i])
	})

	c.mu.Lock()
	defer c.mu.Unlock()
	// A regenerated proxy may have new listeners, clusters and endpoint
	// names; a rebuilt load assignment concerns only the EDS watches.
	regenerated := map[*proxy]bool{}
	for i, p := range stale {
		if c.install(p, gens[i]) {
			regenerated[p] = true
		}
	}
	for i, k := range staleCLAs {
		e := c.clas[k]
		if e == nil || !c.installCLA(e, cbuilt[i]) {
			continue
		}
		for p := range e.proxies {
			p.eds = nil
		}
		for p := range e.proxies {
			if !regenerated[p] {
				c.answer(p, typeEDS)
			}
		}
	}
	for p := range regenerated {
		c.answer(p, "")
	}
	c.retryHeldLocked()
	if len(stale) > 0 || len(staleCLAs) > 0 {
		c.m.refreshSeconds.Observe(time.Since(start).Seconds())
		c.m.regenerated.Add(float64(len(stale)))
		c.m.clasBuilt.Add(float64(len(staleCLAs)))
	}
}

// parallel runs fn(0..n-1) on at most GOMAXPROCS goroutines and waits.
func parallel(n int, fn func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// retryHeld answers watches that were held because this replica was behind.
func (c *Cache) retryHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retryHeldLocked()
}

func (c *Cache) retryHeldLocked() {
	if len(c.held) == 0 {
		return
	}
	applied := c.state.AppliedIndex()
	for w := range c.held {
		if w.need <= applied {
			delete(c.held, w)
			if _, open := w.p.watches[w]; open {
				c.answerOne(w)
			}
		}
	}
}

// generated is one proxy's config built from one consistent view.
type generated struct {
	seq      uint64 // read ticket: a higher one saw the same or a newer state
	idx      uint64
	err      error
	keepOld  bool // a generator error: the proxy keeps what it has
	lds, cds *typeSet
	eps      []envoy.EndpointRef
	warnings []string
}

// generate builds the config of proxy k. It does not take mu.
func (c *Cache) generate(k resource.Key) generated {
	var (
		g  generated
		in *envoy.Input
	)
	c.state.Read(func(v fsm.View) {
		g.seq = c.readSeq.Add(1)
		g.idx, in, g.err = inputIndex(v, k)
		if g.err != nil {
			return
		}
		in.Routes = v.List(resource.TypeTrafficRoute, k.Mesh)
		in.Timeouts = v.List(resource.TypeMeshTimeout, k.Mesh)
	})
	if h := c.genHook.Load(); h != nil {
		(*h)(k)
	}
	if g.err != nil {
		return g
	}
	out, err := envoy.Generate(*in)
	if err != nil {
		c.log.Warn("cannot generate proxy config", "dataplane", k.String(), "err", err)
		g.err, g.keepOld = fmt.Errorf("generate config for %s: %w", k, err), true
		return g
	}
	g.lds, err = buildSet(typeLDS, g.idx, len(out.Listeners), func(i int) (string, proto.Message) {
		return out.Listeners[i].GetName(), out.Listeners[i]
	})
	if err == nil {
		g.cds, err = buildSet(typeCDS, g.idx, len(out.Clusters), func(i int) (string, proto.Message) {
			return out.Clusters[i].GetName(), out.Clusters[i]
		})
	}
	if err != nil {
		g.err, g.keepOld = fmt.Errorf("marshal config for %s: %w", k, err), true
		g.lds, g.cds = nil, nil
		return g
	}
	g.eps = out.Endpoints
	g.warnings = out.Warnings
	return g
}

// install makes g p's config unless a config from a newer view is already
// installed (then g is dropped and install reports false). Caller holds mu.
func (c *Cache) install(p *proxy, g generated) bool {
	if c.proxies[p.key] != p || g.seq < p.readSeq {
		return false // the proxy left meanwhile, or a newer view is installed
	}
	p.readSeq, p.inputIdx, p.err = g.seq, g.idx, g.err
	switch {
	case g.keepOld:
	case g.err != nil:
		c.interns.release(p.lds)
		c.interns.release(p.cds)
		p.lds, p.cds = nil, nil
		c.setEndpoints(p, nil)
	default:
		c.interns.hold(typeLDS, g.lds)
		c.interns.hold(typeCDS, g.cds)
		c.interns.release(p.lds)
		c.interns.release(p.cds)
		p.lds, p.cds = g.lds, g.cds
		c.setEndpoints(p, g.eps)
		if !slices.Equal(p.warnings, g.warnings) { // logged once per change, not per regeneration or push
			p.warnings = g.warnings
			if len(g.warnings) > 0 {
				c.log.Warn("parts of the dataplane are left out of its config", "dataplane", p.key.String(), "warnings", g.warnings)
			}
		}
	}
	return true
}

func buildSet(typeURL string, idx uint64, n int, at func(i int) (string, proto.Message)) (*typeSet, error) {
	ts := &typeSet{index: idx, setBody: &setBody{names: make([]string, 0, n), res: make(map[string]*anypb.Any, n)}}
	h := newHasher()
	for i := range n {
		name, msg := at(i)
		b, err := marshalOpts.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", typeURL, name, err)
		}
		ts.names = append(ts.names, name)
		ts.res[name] = &anypb.Any{TypeUrl: typeURL, Value: b}
		h.addString(name)
		h.add(b)
	}
	slices.Sort(ts.names)
	ts.sum = h.sum()
	ts.version = formatVersion(idx, ts.sum)
	return ts, nil
}

// setEndpoints moves p's CLA references to refs, building CLAs that are new.
func (c *Cache) setEndpoints(p *proxy, refs []envoy.EndpointRef) {
	for _, old := range p.eps {
		k := claKey{p.key.Mesh, old.Cluster}
		if e := c.clas[k]; e != nil {
			delete(e.proxies, p)
			if len(e.proxies) == 0 {
				delete(c.clas, k)
			}
		}
	}
	p.eps, p.eds = refs, nil
	for _, ref := range refs {
		k := claKey{p.key.Mesh, ref.Cluster}
		e := c.clas[k]
		if e == nil {
			e = &cla{ref: ref, proxies: map[*proxy]struct{}{}}
			c.clas[k] = e
			c.buildCLA(k, e)
		}
		e.proxies[p] = struct{}{}
	}
}

// builtCLA is one load assignment built from one consistent view.
type builtCLA struct {
	index   uint64
	version string
	any     *anypb.Any
}

// loadAssignment builds the load assignment of ref in k's mesh. It does not take mu.
func (c *Cache) loadAssignment(k claKey, ref envoy.EndpointRef) builtCLA {
	var (
		b   builtCLA
		dps []*resource.Resource
	)
	c.state.Read(func(v fsm.View) {
		b.index = v.ServiceIndex(k.mesh, ref.Service)
		dps = v.DataplanesByService(k.mesh, ref.Service)
	})
	msg := envoy.LoadAssignment(ref, dps)
	raw, err := marshalOpts.Marshal(msg)
	if err != nil {
		c.log.Error("cannot marshal load assignment", "cluster", k.cluster, "err", err)
		return b
	}
	b.any = &anypb.Any{TypeUrl: typeEDS, Value: raw}
	h := newHasher()
	h.add(raw)
	b.version = formatVersion(b.index, h.sum())
	return b
}

// installCLA installs b unless e already has a newer one. Caller holds mu.
func (c *Cache) installCLA(e *cla, b builtCLA) bool {
	if b.any == nil || (e.any != nil && b.index < e.index) {
		return false
	}
	e.index, e.version, e.any = b.index, b.version, b.any
	return true
}

// buildCLA builds a new shared load assignment (the first proxy that needs
// it). Caller holds mu.
func (c *Cache) buildCLA(k claKey, e *cla) {
	c.installCLA(e, c.loadAssignment(k, e.ref))
}

// minIndex is the applied index this replica needs before it may answer:
// the newest index of anything the proxy already has. It cannot change
// during the watch's life (addWatch stores it in need).
func (w *watch) minIndex() uint64 {
	var m uint64
	if w.req != nil {
		m = versionIndex(w.req.GetVersionInfo())
	}
	if w.sub != nil {
		for _, v := range w.sub.ReturnedResources() {
			m = max(m, versionIndex(v))
		}
	}
	return m
}

// CreateWatch implements cache.ConfigWatcher (state of the world).
func (c *Cache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	k, err := ParseNodeID(req.GetNode().GetId())
	if err != nil {
		return nil, err
	}
	return c.addWatch(k, &watch{typeURL: req.GetTypeUrl(), req: req, sub: sub, ch: ch})
}

// CreateDeltaWatch implements cache.ConfigWatcher (incremental).
func (c *Cache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	k, err := ParseNodeID(req.GetNode().GetId())
	if err != nil {
		return nil, err
	}
	return c.addWatch(k, &watch{typeURL: req.GetTypeUrl(), dreq: req, sub: sub, dch: ch})
}

// Fetch implements cache.ConfigFetcher; REST polling is not served.
func (c *Cache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("xds: REST fetch is not supported; use ADS")
}

func (c *Cache) addWatch(k resource.Key, w *watch) (func(), error) {
	switch w.typeURL {
	case typeLDS, typeCDS, typeEDS:
	default:
		// Types we do not generate (RDS, SDS...) get no answer, like an empty SotW set.
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proxies[k]
	if p == nil {
		return nil, fmt.Errorf("xds: no stream registered for %s", k)
	}
	w.p = p
	w.need = w.minIndex()
	p.watches[w] = struct{}{}
	c.answerOne(w)
	return func() {
		c.mu.Lock()
		delete(p.watches, w)
		delete(c.held, w)
		c.mu.Unlock()
	}, nil
}

// answer tries the open watches of p of typeURL ("" for every type).
func (c *Cache) answer(p *proxy, typeURL string) {
	for w := range p.watches {
		if typeURL == "" || w.typeURL == typeURL {
			c.answerOne(w)
		}
	}
}

// answerOne sends w its response if there is something new for it, and
// closes it. Caller holds mu.
func (c *Cache) answerOne(w *watch) {
	p := w.p
	if p.err != nil || p.lds == nil {
		return // nothing to serve yet; the proxy keeps what it has
	}
	if w.need > c.state.AppliedIndex() {
		// This replica is behind the proxy: wait, never go back in time.
		if _, already := c.held[w]; !already {
			c.held[w] = struct{}{}
			c.m.heldBehind.Inc()
		}
		return
	}
	var sent bool
	if w.dreq != nil {
		sent = c.answerDelta(w)
	} else {
		sent = c.answerSotW(w)
	}
	if sent {
		delete(p.watches, w)
		c.m.response(w.typeURL)
	}
}

// entry is one resource as a watch sees it.
type entry struct {
	name    string
	any     *anypb.Any
	version string
}

// current returns the listeners or clusters of p for w, sorted by name,
// and the highest change index among them.
func (c *Cache) current(w *watch) ([]entry, uint64) {
	if w.typeURL == typeEDS {
		v := c.edsCurrent(w)
		return v.entries, v.index
	}
	ts := w.p.lds
	if w.typeURL == typeCDS {
		ts = w.p.cds
	}
	out := make([]entry, len(ts.names))
	for i, n := range ts.names {
		out[i] = entry{n, ts.res[n], ts.version}
	}
	return out, ts.index
}

// edsView is what an EDS watch sees: the load assignments it asks for (or,
// for a wildcard watch, all those its proxy needs) that exist, sorted by
// name, and the highest change index among them. A proxy keeps the last
// one while it asks for nothing but what it needs: it is dropped when the
// proxy's needs or one of those load assignments change.
type edsView struct {
	all     bool     // a wildcard watch
	names   []string // else the names asked for, sorted
	entries []entry
	index   uint64
	version string // state-of-the-world version of entries; "" until computed
}

func (v *edsView) matches(all bool, want map[string]struct{}) bool {
	if all || v.all {
		return all == v.all
	}
	if len(want) != len(v.names) {
		return false
	}
	for _, n := range v.names {
		if _, ok := want[n]; !ok {
			return false
		}
	}
	return true
}

func (v *edsView) sotwVersion() string {
	if v.version == "" {
		h := newHasher()
		for _, e := range v.entries {
			h.addString(e.name)
			h.addString(e.version)
		}
		v.version = formatVersion(v.index, h.sum())
	}
	return v.version
}

// edsCurrent returns w's edsView. Caller holds mu.
func (c *Cache) edsCurrent(w *watch) *edsView {
	p := w.p
	want := w.sub.SubscribedResources()
	all := w.sub.IsWildcard() || len(want) == 0
	if v := p.eds; v != nil && v.matches(all, want) {
		return v
	}
	v := &edsView{all: all}
	add := func(name string) {
		if e := c.clas[claKey{p.key.Mesh, name}]; e != nil && e.any != nil {
			v.entries = append(v.entries, entry{name, e.any, e.version})
			v.index = max(v.index, e.index)
		}
	}
	keep := true
	if all {
		for _, ref := range p.eps { // sorted and unique
			add(ref.Cluster)
		}
	} else {
		v.names = make([]string, 0, len(want))
		for name := range want {
			v.names = append(v.names, name)
		}
		slices.Sort(v.names)
		for _, name := range v.names {
			// A load assignment the proxy does not need may come and go
			// with other proxies: such a view is not kept.
			if _, needed := slices.BinarySearchFunc(p.eps, name, func(r envoy.EndpointRef, n string) int {
				return strings.Compare(r.Cluster, n)
			}); !needed {
				keep = false
			}
			add(name)
		}
	}
	if keep {
		p.eds = v
	}
	return v
}

func (c *Cache) answerSotW(w *watch) bool {
	var (
		entries []entry
		version string
	)
	switch {
	case w.typeURL == typeEDS:
		v := c.edsCurrent(w)
		entries, version = v.entries, v.sotwVersion()
	case w.typeURL == typeLDS:
		version = w.p.lds.version
	default:
		version = w.p.cds.version
	}
	if version == w.req.GetVersionInfo() {
		return false // the proxy has exactly this
	}
	if w.typeURL != typeEDS {
		entries, _ = c.current(w)
	}
	if w.req.GetErrorDetail() != nil && w.p.lastSent[w.typeURL] == version {
		return false // a NACK: do not send the rejected version again, wait for a new one
	}
	out := &discovery.DiscoveryResponse{VersionInfo: version, TypeUrl: w.typeURL}
	returned := make(map[string]string, len(entries))
	if w.typeURL == typeEDS {
		// Load assignments are not state of the world (only listeners and
		// clusters are): a response carries those the proxy does not have
		// yet, and one it omits is kept (as Envoy and kuma-dp do). So an
		// endpoint change sends one load assignment, not every one the proxy
		// uses. After a NACK, or on a new stream, everything is sent.
		known := w.sub.ReturnedResources()
		if w.req.GetErrorDetail() != nil {
			known = nil
		}
		for _, e := range entries {
			returned[e.name] = e.version
			if known[e.name] != e.version {
				out.Resources = append(out.Resources, e.any)
			}
		}
	} else {
		out.Resources = make([]*anypb.Any, len(entries))
		for i, e := range entries {
			out.Resources[i] = e.any
			returned[e.name] = version
		}
	}
	select {
	case w.ch <- &sotwResponse{req: w.req, resp: out, returned: returned}:
		w.p.lastSent[w.typeURL] = version
	default:
		// The server's channel holds one response per type; a full channel
		// means one is already on its way and the next request re-watches.
		return false
	}
	return true
}

func (c *Cache) answerDelta(w *watch) bool {
	entries, _ := c.current(w)
	known := w.sub.ReturnedResources()
	out := &discovery.DeltaDiscoveryResponse{TypeUrl: w.typeURL}
	next := make(map[string]string, len(entries))
	h := newHasher()
	for _, e := range entries {
		next[e.name] = e.version
		h.addString(e.name)
		h.addString(e.version)
		if known[e.name] != e.version {
			out.Resources = append(out.Resources, &discovery.Resource{Name: e.name, Version: e.version, Resource: e.any})
		}
	}
	for n := range known {
		if _, ok := next[n]; !ok {
			out.RemovedResources = append(out.RemovedResources, n)
		}
	}
	slices.Sort(out.RemovedResources)
	// The first answer on a stream is sent even when empty, so the proxy
	// knows the type is served.
	first := w.dreq.GetResponseNonce() == "" && len(w.dreq.GetInitialResourceVersions()) == 0 && len(known) == 0
	if len(out.Resources) == 0 && len(out.RemovedResources) == 0 && !first {
		return false
	}
	out.SystemVersionInfo = formatVersion(0, h.sum())
	select {
	case w.dch <- &deltaResponse{req: w.dreq, resp: out, next: next}:
	default:
		return false
	}
	return true
}

// Config returns the current listeners, clusters and load assignments of a
// connected proxy (for tests and debugging), or an error.
func (c *Cache) Config(k resource.Key) (map[string][]*anypb.Any, map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proxies[k]
	if p == nil {
		return nil, nil, fmt.Errorf("%s has no stream on this replica", k)
	}
	if p.err != nil {
		return nil, nil, p.err
	}
	out := map[string][]*anypb.Any{}
	vers := map[string]string{}
	for _, ts := range []*typeSet{p.lds, p.cds} {
		for _, n := range ts.names {
			out[ts.res[n].TypeUrl] = append(out[ts.res[n].TypeUrl], ts.res[n])
		}
	}
	vers[typeLDS], vers[typeCDS] = p.lds.version, p.cds.version
	for _, ref := range p.eps {
		if e := c.clas[claKey{k.Mesh, ref.Cluster}]; e != nil && e.any != nil {
			out[typeEDS] = append(out[typeEDS], e.any)
		}
	}
	return out, vers, nil
}

func shortType(typeURL string) string {
	switch typeURL {
	case typeLDS:
		return "lds"
	case typeCDS:
		return "cds"
	case typeEDS:
		return "eds"
	}
	return "other"
}

// sotwResponse is a prebuilt state-of-the-world response.
type sotwResponse struct {
	req      *discovery.DiscoveryRequest
	resp     *discovery.DiscoveryResponse
	returned map[string]string
}

func (r *sotwResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	return r.resp, nil
}
func (r *sotwResponse) GetRequest() *discovery.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)             { return r.resp.VersionInfo, nil }
func (r *sotwResponse) GetResponseVersion() string              { return r.resp.VersionInfo }
func (r *sotwResponse) GetReturnedResources() map[string]string { return r.returned }
func (r *sotwResponse) GetContext() context.Context             { return context.Background() }

// deltaResponse is a prebuilt incremental response.
type deltaResponse struct {
	req  *discovery.DeltaDiscoveryRequest
	resp *discovery.DeltaDiscoveryResponse
	next map[string]string
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	return r.resp, nil
}
func (r *deltaResponse) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                 { return r.resp.SystemVersionInfo, nil }
func (r *deltaResponse) GetResponseVersion() string                        { return r.resp.SystemVersionInfo }
func (r *deltaResponse) GetNextVersionMap() map[string]string              { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string           { return r.next }
func (r *deltaResponse) GetContext() context.Context                       { return context.Background() }

var (
	_ cache.Cache         = (*Cache)(nil)
	_ cache.Response      = (*sotwResponse)(nil)
	_ cache.DeltaResponse = (*deltaResponse)(nil)
)
