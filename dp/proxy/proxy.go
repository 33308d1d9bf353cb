package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"
)

// Defaults of the Options fields left zero.
const (
	DefaultDrainTime    = 30 * time.Second
	DefaultEjectionTime = 5 * time.Second
)

// ErrClosed is returned by Apply after Shutdown.
var ErrClosed = errors.New("proxy: shut down")

// Options configures a Proxy. The zero value is usable.
type Options struct {
	// Logger receives state changes (listener bound, draining, drained,
	// endpoint ejected); per-connection events are logged at debug level.
	// nil: slog.Default().
	Logger *slog.Logger
	// DrainTime is how long connections of removed or moved listeners (and
	// on Shutdown) may finish before they are closed [30s].
	DrainTime time.Duration
	// EjectionTime is how long an endpoint that refused or timed out a
	// connect is skipped [5s].
	EjectionTime time.Duration
	// Dial connects to upstream endpoints; it must return when ctx ends
	// (connect timeout, or the connection being closed by a drain).
	// nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Proxy runs the TCP listeners and clusters of the config last applied.
type Proxy struct {
	log          *slog.Logger
	drainTime    time.Duration
	ejectionTime time.Duration
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	epoch        time.Time // connection activity is kept as monotonic time since epoch

	applyMu   sync.Mutex // serialises Apply and Shutdown
	wg        sync.WaitGroup
	forceCh   chan struct{} // closed when Shutdown's ctx ends: close every connection now
	forceOnce sync.Once

	mu struct {
		sync.Mutex
		listeners map[string]*listener   // by name: accepting, or failed to bind
		draining  map[*listener]struct{} // stopped accepting, connections left
		clusters  map[string]*cluster
		shut      bool
	}
}

// New returns a Proxy with no listener; Apply gives it its config.
func New(opts Options) *Proxy {
	p := &Proxy{
		log:          cmp.Or(opts.Logger, slog.Default()).With("component", "proxy"),
		drainTime:    cmp.Or(opts.DrainTime, DefaultDrainTime),
		ejectionTime: cmp.Or(opts.EjectionTime, DefaultEjectionTime),
		dial:         opts.Dial,
		epoch:        time.Now(),
		forceCh:      make(chan struct{}),
	}
	if p.dial == nil {
		p.dial = (&net.Dialer{}).DialContext
	}
	p.mu.listeners = map[string]*listener{}
	p.mu.draining = map[*listener]struct{}{}
	p.mu.clusters = map[string]*cluster{}
	return p
}

// Apply installs cfg, which must pass Validate (otherwise nothing changes).
// New listeners bind; listeners whose address is unchanged get their new
// routing atomically, established connections untouched; listeners that
// disappear or change address stop accepting at once and their connections
// drain for up to DrainTime. A listener that fails to bind does not stop
// the others: the returned error joins every bind failure, Status shows it,
// and the next Apply tries again. Applying the same config again changes no
// listener. Apply is safe to call concurrently with traffic and Status.
func (p *Proxy) Apply(cfg Config) error {
	pl, err := compile(cfg)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()

	p.mu.Lock()
	if p.mu.shut {
		p.mu.Unlock()
		return ErrClosed
	}
	clusters := make(map[string]*cluster, len(pl.clusters))
	for name, spec := range pl.clusters {
		clusters[name] = newCluster(spec, p.mu.clusters[name])
	}
	p.mu.clusters = clusters
	// Stop what goes away or moves first, so that a listener taking over
	// another's address can bind it.
	for _, name := range slices.Sorted(maps.Keys(p.mu.listeners)) {
		l := p.mu.listeners[name]
		if spec := pl.listeners[name]; spec != nil && l.ln != nil && spec.addr == l.addr {
			continue
		}
		delete(p.mu.listeners, name)
		if l.ln != nil {
			p.drainLocked(l, "listener removed or moved")
		}
	}
	current := maps.Clone(p.mu.listeners)
	p.mu.Unlock()

	var errs []error
	for _, name := range slices.Sorted(maps.Keys(pl.listeners)) {
		spec := pl.listeners[name]
		if l := current[name]; l != nil {
			l.route.Store(newRoute(spec, clusters, l.route.Load()))
			continue
		}
		l := p.bind(spec, newRoute(spec, clusters, nil))
		if l.bindErr != nil {
			errs = append(errs, l.bindErr)
		}
		p.mu.Lock()
		p.mu.listeners[name] = l
		p.mu.Unlock()
		if l.ln != nil {
			p.wg.Add(1)
			go l.runAccept()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// drainLocked stops l accepting and lets its connections finish for up to
// DrainTime. p.mu must be held.
func (p *Proxy) drainLocked(l *listener, why string) {
	p.mu.draining[l] = struct{}{}
	l.stopAccepting()
	p.log.Info("listener draining", "listener", l.name, "address", l.bound, "reason", why, "connections", l.activeCount())
	p.wg.Add(1)
	go p.runDrain(l)
}

func (p *Proxy) runDrain(l *listener) {
	defer p.wg.Done()
	t := time.NewTimer(p.drainTime)
	defer t.Stop()
	select {
	case <-l.drainedCh:
	case <-t.C:
		if n := l.closeAll(); n > 0 {
			p.log.Info("listener drain time over, closing connections", "listener", l.name, "address", l.bound, "connections", n)
		}
	case <-p.forceCh:
		l.closeAll()
	}
	<-l.drainedCh // closed connections end promptly
	p.mu.Lock()
	delete(p.mu.draining, l)
	p.mu.Unlock()
	p.log.Info("listener drained", "listener", l.name, "address", l.bound)
}

// Shutdown stops accepting on every listener, waits for the connections to
// finish until ctx ends or DrainTime passes (then closes them), and returns
// once every goroutine of the proxy has exited. It returns ctx's error if
// ctx ended first. Apply fails with ErrClosed afterwards.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	p.mu.Lock()
	if !p.mu.shut {
		p.mu.shut = true
		for _, name := range slices.Sorted(maps.Keys(p.mu.listeners)) {
			if l := p.mu.listeners[name]; l.ln != nil {
				p.drainLocked(l, "shutdown")
			}
			delete(p.mu.listeners, name)
		}
	}
	var drained []chan struct{}
	for l := range p.mu.draining {
		drained = append(drained, l.drainedCh)
	}
	p.mu.Unlock()

	var err error
wait:
	for _, ch := range drained {
		select {
		case <-ch:
		case <-ctx.Done():
			err = fmt.Errorf("shutdown: connections closed before they ended: %w", ctx.Err())
			break wait
		}
	}
	if err != nil {
		p.forceOnce.Do(func() { close(p.forceCh) })
	}
	p.wg.Wait()
	return err
}

// Status is the proxy's state, as the agent serves it on its admin endpoint.
type Status struct {
	Listeners []ListenerStatus `json:"listeners"`
	Clusters  []ClusterStatus  `json:"clusters"`
}

// ListenerStatus is one listener. A listener that moved to another address
// appears twice while its old socket drains.
type ListenerStatus struct {
	Name      string `json:"name"`
	Address   string `json:"address"` // the bound address (with the actual port when configured as 0)
	Direction string `json:"direction"`
	Active    int64  `json:"active"` // open downstream connections
	Total     uint64 `json:"total"`  // accepted connections
	// Failed counts connections closed without reaching an upstream: the
	// sum of the three below.
	Failed        uint64 `json:"failed"`
	NoCluster     uint64 `json:"noCluster"`     // the cluster is missing, or the listener has no filter
	NoEndpoint    uint64 `json:"noEndpoint"`    // the cluster has no endpoint
	ConnectFailed uint64 `json:"connectFailed"` // every endpoint refused or timed out
	BytesIn       uint64 `json:"bytesIn"`       // from downstream to upstream
	BytesOut      uint64 `json:"bytesOut"`      // from upstream to downstream
	Draining      bool   `json:"draining"`
	Error         string `json:"error,omitempty"` // bind error
}

// ClusterStatus is one cluster and its endpoints.
type ClusterStatus struct {
	Name           string           `json:"name"`
	ConnectTimeout string           `json:"connectTimeout"`
	LbPolicy       string           `json:"lbPolicy"`
	Endpoints      []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is one endpoint of a cluster.
type EndpointStatus struct {
	Address      string    `json:"address"`
	Active       int64     `json:"active"`                // proxied connections
	EjectedUntil time.Time `json:"ejectedUntil,omitzero"` // set while a failed connect keeps it skipped
}

// Status returns the listeners (sorted by name; a draining one after the
// accepting one of the same name) and clusters (sorted by name).
func (p *Proxy) Status() Status {
	p.mu.Lock()
	ls := slices.Collect(maps.Values(p.mu.listeners))
	ls = slices.AppendSeq(ls, maps.Keys(p.mu.draining))
	clusters := p.mu.clusters
	p.mu.Unlock()

	st := Status{Listeners: make([]ListenerStatus, 0, len(ls)), Clusters: make([]ClusterStatus, 0, len(clusters))}
	for _, l := range ls {
		st.Listeners = append(st.Listeners, l.status())
	}
	slices.SortFunc(st.Listeners, func(a, b ListenerStatus) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if a.Draining != b.Draining {
			if a.Draining {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Address, b.Address)
	})
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(clusters)) {
		c := clusters[name]
		cs := ClusterStatus{Name: name, ConnectTimeout: c.connectTimeout.String(), LbPolicy: c.lb.String(),
			Endpoints: make([]EndpointStatus, 0, len(c.endpoints))}
		for _, e := range c.endpoints {
			es := EndpointStatus{Address: e.addr, Active: e.active.Load()}
			if u := e.ejectedUntil.Load(); u > now.UnixNano() {
				es.EjectedUntil = time.Unix(0, u)
			}
			cs.Endpoints = append(cs.Endpoints, es)
		}
		st.Clusters = append(st.Clusters, cs)
	}
	return st
}
