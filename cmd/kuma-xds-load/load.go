package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/kuma-ha/kuma-ha/dp/xdsclient"
)

// target is the control plane under load: where proxies connect, how the
// state is changed, and what each replica uses. The real one speaks the
// REST API (httpTarget); the test uses an in-process server.
type target interface {
	// XDSAddrs are the replicas' xDS addresses; proxy i connects to i mod len.
	XDSAddrs() []string
	// Put creates or replaces the Dataplane name; i spreads writes over replicas.
	Put(ctx context.Context, i int, name string, doc []byte) error
	// Delete removes the Dataplane name (absent is not an error).
	Delete(ctx context.Context, i int, name string) error
	// Usage reads every replica's resource usage.
	Usage(ctx context.Context) ([]usage, error)
}

// usage is one replica's resource use, from its /metrics.
type usage struct {
	Name       string
	RSSBytes   float64
	CPUSeconds float64
	Proxies    float64 // kuma_xds_proxies: proxies with a stream on it
}

// targetService is the service every proxy has an outbound to.
const targetService = "backend"

// loadOptions configure one level (one proxy count).
type loadOptions struct {
	Proxies        int
	Changes        int
	Delta          bool
	Register       bool // proxies register their Dataplane through node metadata
	StreamsPerConn int
	Backends       int           // static Dataplanes providing targetService
	Services       int           // distinct services of the proxies' inbounds
	Concurrency    int           // parallel API writes during setup
	Timeout        time.Duration // per change, until every proxy has it
	SetupTimeout   time.Duration // until every proxy has its initial config
	Log            *slog.Logger
	ClientLog      *slog.Logger // the simulated proxies' own logs
	// AroundChanges, if set, is called when the measured changes start; the
	// function it returns when they end (profiling).
	AroundChanges func(ctx context.Context) func()
}

// levelResult is what one level measured.
type levelResult struct {
	Proxies, Replicas, Changes int
	Delta, Register            bool
	FromAck                    []time.Duration // per (proxy, change): API answered -> proxy has it (0 if earlier), sorted
	FromSend                   []time.Duration // per (proxy, change): write sent -> proxy has it, sorted
	Writes                     []time.Duration // per change: the API write itself, sorted
	Converged                  []time.Duration // per change: API answered -> last proxy has it
	Missing                    int             // (proxy, change) pairs that did not converge within the timeout
	NotConverged               []string        // proxies that missed at least one change (first few)
	Setup                      time.Duration   // Dataplanes created, proxies connected with their initial config
	Replicas0, Replicas1       []usage         // before and after the changes
	NACKs, Reconnects          int
	ToolRSS                    float64 // the load tool's own peak RSS, bytes
	ToolCPU                    float64 // CPU seconds the load tool used during the changes
	WriteRetries               int     // change writes that were refused (no quorum) or unanswered, then retried
}

// retry calls write(attempt) until it succeeds, fails for good, or keeps
// failing with errUnavailable for longer than limit; each attempt goes to
// the next replica. It returns how many attempts failed.
func retry(ctx context.Context, limit time.Duration, write func(attempt int) error) (int, error) {
	deadline := time.Now().Add(limit)
	for a := 0; ; a++ {
		err := write(a)
		if err == nil || !errors.Is(err, errUnavailable) || time.Now().After(deadline) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(min(50*time.Millisecond<<min(a, 4), time.Second)):
		}
	}
}

func proxyName(i int) string { return fmt.Sprintf("load-%05d", i) }

// proxyDoc is proxy i's Dataplane: an inbound of service svc-(i mod S) and
// outbounds to backend and two other services.
func proxyDoc(i, services int) []byte {
	return fmt.Appendf(nil, `{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":"10.%d.%d.%d",`+
		`"inbound":[{"port":8080,"tags":{"kuma.io/service":"svc-%d"}}],"outbound":[`+
		`{"port":10001,"tags":{"kuma.io/service":%q}},{"port":10002,"tags":{"kuma.io/service":"svc-%d"}},`+
		`{"port":10003,"tags":{"kuma.io/service":"svc-%d"}}]}}`,
		proxyName(i), 1+i/65536, i/256%256, i%256, i%services, targetService, (i+1)%services, (i+7)%services)
}

func backendName(k int) string { return fmt.Sprintf("backend-%04d", k) }

// backendDoc is a Dataplane providing targetService at address addr.
func backendDoc(name, addr string) []byte {
	return fmt.Appendf(nil, `{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":%q,`+
		`"inbound":[{"port":8080,"tags":{"kuma.io/service":%q}}]}}`, name, addr, targetService)
}

func staticBackendAddr(k int) string { return fmt.Sprintf("10.250.%d.%d", k/256%256, k%256) }

// movingBackend is the Dataplane that change k adds (k even) or removes (k odd).
func movingBackend(k int) (name, addr string) {
	j := k / 2
	return fmt.Sprintf("backend-moving-%04d", j), fmt.Sprintf("10.251.%d.%d", j/256%256, j%256)
}

// sim is one simulated proxy.
type sim struct {
	i      int
	client *xdsclient.Client
	ready  atomic.Bool
}

// awaited is one change every proxy must see: endpoint addr present (or gone)
// in the load assignment of targetService.
type awaited struct {
	addr    string
	present bool
	seen    []atomic.Int64 // per proxy: unix nanos when it had the change, 0 until then
	left    atomic.Int64
	done    chan struct{}
}

// level is one level in progress.
type level struct {
	opts    loadOptions
	sims    []*sim
	current atomic.Pointer[awaited]
	readyN  atomic.Int64
	readyCh chan struct{}
	// eps memoizes a load assignment's endpoint set: with a Fleet, proxies
	// share the decoded message, so each distinct one is scanned once.
	eps sync.Map // *ClusterLoadAssignment -> map[string]bool
}

func (r *level) endpoints(cla *endpointv3.ClusterLoadAssignment) map[string]bool {
	if cla == nil {
		return nil
	}
	if v, ok := r.eps.Load(cla); ok {
		return v.(map[string]bool)
	}
	out := map[string]bool{}
	for _, le := range cla.GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			out[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = true
		}
	}
	r.eps.Store(cla, out)
	return out
}

// onUpdate runs on proxy i's goroutine for every config it accepts.
func (r *level) onUpdate(s *sim, snap *xdsclient.Snapshot) {
	now := time.Now().UnixNano()
	if !s.ready.Load() && snap.Complete() && len(r.endpoints(snap.Endpoints[targetService])) >= r.opts.Backends {
		if s.ready.CompareAndSwap(false, true) && r.readyN.Add(1) == int64(len(r.sims)) {
			close(r.readyCh)
		}
	}
	r.check(r.current.Load(), s, snap, now)
}

func (r *level) check(w *awaited, s *sim, snap *xdsclient.Snapshot, now int64) {
	if w == nil || w.seen[s.i].Load() != 0 {
		return
	}
	if r.endpoints(snap.Endpoints[targetService])[w.addr] != w.present {
		return
	}
	if w.seen[s.i].CompareAndSwap(0, now) && w.left.Add(-1) == 0 {
		close(w.done)
	}
}

// runLevel creates the Dataplanes, connects the proxies, applies the
// changes one at a time and measures how long each takes to reach every proxy.
func runLevel(ctx context.Context, t target, o loadOptions) (*levelResult, error) {
	addrs := t.XDSAddrs()
	if len(addrs) == 0 {
		return nil, errors.New("no xDS address")
	}
	res := &levelResult{Proxies: o.Proxies, Replicas: len(addrs), Changes: o.Changes, Delta: o.Delta, Register: o.Register}
	setupStart := time.Now()
	o.Log.Info("creating Dataplanes", "backends", o.Backends, "proxies", o.Proxies, "register", o.Register)
	if err := parallel(ctx, o.Backends, o.Concurrency, func(k int) error {
		_, err := retry(ctx, o.Timeout, func(a int) error {
			return t.Put(ctx, k+a, backendName(k), backendDoc(backendName(k), staticBackendAddr(k)))
		})
		return err
	}); err != nil {
		return nil, fmt.Errorf("create backends: %w", err)
	}
	if !o.Register {
		if err := parallel(ctx, o.Proxies, o.Concurrency, func(i int) error {
			_, err := retry(ctx, o.Timeout, func(a int) error { return t.Put(ctx, i+a, proxyName(i), proxyDoc(i, o.Services)) })
			return err
		}); err != nil {
			return nil, fmt.Errorf("create proxy Dataplanes: %w", err)
		}
	}

	r := &level{opts: o, readyCh: make(chan struct{})}
	fleet := xdsclient.NewFleet(o.StreamsPerConn)
	defer fleet.Close()
	for i := range o.Proxies {
		s := &sim{i: i}
		// Proxy i starts on replica i mod R and fails over to the next ones.
		servers := append(slices.Clone(addrs[i%len(addrs):]), addrs[:i%len(addrs)]...)
		cfg := xdsclient.Config{NodeID: "default." + proxyName(i), Servers: servers, Delta: o.Delta,
			Logger: o.ClientLog, Fleet: fleet, OnUpdate: func(snap *xdsclient.Snapshot) { r.onUpdate(s, snap) }}
		if o.Register {
			cfg.Dataplane = proxyDoc(i, o.Services)
		}
		c, err := xdsclient.New(cfg)
		if err != nil {
			return nil, err
		}
		s.client = c
		r.sims = append(r.sims, s)
	}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	for _, s := range r.sims {
		wg.Go(func() { _ = s.client.Run(pctx) })
	}
	o.Log.Info("proxies connecting", "proxies", o.Proxies, "replicas", len(addrs), "delta", o.Delta)
	select {
	case <-r.readyCh:
	case <-time.After(o.SetupTimeout):
		return nil, fmt.Errorf("only %d of %d proxies had their initial config after %s (e.g. %s)",
			r.readyN.Load(), o.Proxies, o.SetupTimeout, r.firstNotReady())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res.Setup = time.Since(setupStart)
	o.Log.Info("proxies have their initial config", "proxies", o.Proxies, "setup", res.Setup.Round(time.Millisecond))

	var err error
	if res.Replicas0, err = t.Usage(ctx); err != nil {
		return nil, err
	}
	cpu0 := selfCPU()
	endChanges := func() {}
	if o.AroundChanges != nil {
		endChanges = sync.OnceFunc(o.AroundChanges(ctx))
		defer endChanges() // on the error paths
	}
	notConverged := map[int]bool{}
	for k := range o.Changes {
		name, addr := movingBackend(k)
		w := &awaited{addr: addr, present: k%2 == 0, seen: make([]atomic.Int64, len(r.sims)), done: make(chan struct{})}
		w.left.Store(int64(len(r.sims)))
		r.current.Store(w)
		// A proxy may already be in the awaited state (it missed the previous change).
		now := time.Now().UnixNano()
		for _, s := range r.sims {
			r.check(w, s, s.client.Snapshot(), now)
		}
		sent := time.Now()
		retries, err := retry(ctx, o.Timeout, func(a int) error {
			if w.present {
				return t.Put(ctx, k+a, name, backendDoc(name, addr))
			}
			return t.Delete(ctx, k+a, name)
		})
		res.WriteRetries += retries
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", k+1, err)
		}
		acked := time.Now()
		res.Writes = append(res.Writes, acked.Sub(sent))
		timer := time.NewTimer(o.Timeout)
		select {
		case <-w.done:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		}
		timer.Stop()
		r.current.Store(nil)
		var last time.Duration
		for i := range w.seen {
			at := w.seen[i].Load()
			if at == 0 {
				res.Missing++
				notConverged[i] = true
				continue
			}
			d := time.Unix(0, at).Sub(acked)
			res.FromSend = append(res.FromSend, time.Unix(0, at).Sub(sent))
			res.FromAck = append(res.FromAck, max(0, d))
			last = max(last, d)
		}
		res.Converged = append(res.Converged, last)
		verb := "added"
		if !w.present {
			verb = "removed"
		}
		o.Log.Info("change propagated", "change", k+1, "endpoint", addr, "what", verb,
			"write", acked.Sub(sent).Round(time.Microsecond), "last proxy", last.Round(time.Microsecond),
			"missing", int(w.left.Load()))
		r.eps.Clear()
	}
	res.ToolCPU = selfCPU() - cpu0
	endChanges()
	if res.Replicas1, err = t.Usage(ctx); err != nil {
		return nil, err
	}
	for _, i := range slices.Sorted(maps.Keys(notConverged)) {
		if len(res.NotConverged) == 10 {
			res.NotConverged = append(res.NotConverged, fmt.Sprintf("and %d more", len(notConverged)-10))
			break
		}
		res.NotConverged = append(res.NotConverged, proxyName(i))
	}
	for _, s := range r.sims {
		st := s.client.Status()
		res.NACKs += st.NACKs
		res.Reconnects += st.Reconnects
	}
	slices.Sort(res.FromAck)
	slices.Sort(res.FromSend)
	slices.Sort(res.Writes)
	res.ToolRSS = selfPeakRSS()
	return res, nil
}

// cleanup removes what runLevel created (an existing cluster is left as found).
func cleanup(ctx context.Context, t target, o loadOptions) error {
	var names []string
	for k := range o.Backends {
		names = append(names, backendName(k))
	}
	for i := range o.Proxies {
		names = append(names, proxyName(i))
	}
	for k := 0; k < o.Changes; k += 2 {
		name, _ := movingBackend(k)
		names = append(names, name)
	}
	return parallel(ctx, len(names), o.Concurrency, func(i int) error { return t.Delete(ctx, i, names[i]) })
}

func (r *level) firstNotReady() string {
	for _, s := range r.sims {
		if !s.ready.Load() {
			st := s.client.Status()
			return fmt.Sprintf("%s connected=%v server=%q last error: %v", proxyName(s.i), st.Connected, st.Server, st.LastError)
		}
	}
	return "none"
}

// parallel runs f(0..n-1) with at most c at a time; the first error stops it.
func parallel(ctx context.Context, n, c int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(c, n)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// percentile is the nearest-rank percentile of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p/100+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
}
