package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	deltaserver "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwserver "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Cluster is what the xDS server needs from the replica it runs on
// (cmd/kuma-cp adapts cluster.Node to it).
type Cluster interface {
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	Members() []Member
	Name() string
	Instance() string
	Ready() (bool, string)
	// ServeLocal is Ready, or, while the cluster has no leader, whether
	// the replica has state to serve frozen (as cluster.Node.ServeLocal).
	ServeLocal() (bool, string)
	RunWhileLeader(name string, fn func(ctx context.Context))
}

// Options configure a Server. Zero values take the defaults in brackets.
type Options struct {
	State   State
	Cluster Cluster
	Logger  *slog.Logger
	// Registry receives the xDS metrics (nil: not registered).
	Registry prometheus.Registerer
	// ReadyTimeout bounds how long a new stream waits for this replica to
	// catch up with the log before it is refused [10s].
	ReadyTimeout time.Duration
	// InsightFlush is how often response and ACK/NACK counters are written
	// [10s, as Kuma's dataplane status flush]; connects, disconnects and
	// NACKs go out within min(InsightFlush/4, 250ms).
	InsightFlush time.Duration
	// DeregisterGrace: a proxy-registered Dataplane whose proxy has had no
	// stream to any replica for this long is removed by the leader [1m].
	DeregisterGrace time.Duration
	// DeadReplicaGrace: the leader closes the streams recorded for a replica
	// that gossip has declared dead for this long [5s].
	DeadReplicaGrace time.Duration
	// RebalanceRate is how many streams a second a replica holding more
	// than its fair share closes [2]; negative disables rebalancing.
	RebalanceRate float64
	// RebalanceInterval is how often the balance is checked [1s].
	RebalanceInterval time.Duration
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if o.InsightFlush <= 0 {
		o.InsightFlush = 10 * time.Second
	}
	if o.DeregisterGrace <= 0 {
		o.DeregisterGrace = time.Minute
	}
	if o.DeadReplicaGrace <= 0 {
		o.DeadReplicaGrace = 5 * time.Second
	}
	if o.RebalanceRate == 0 {
		o.RebalanceRate = 2
	}
	if o.RebalanceInterval <= 0 {
		o.RebalanceInterval = time.Second
	}
}

// Server serves ADS (state of the world and incremental) from this
// replica's copy of the state.
type Server struct {
	opts  Options
	log   *slog.Logger
	cache *Cache
	m     *metrics
	grpc  *grpc.Server // built by New, so Shutdown may come before or during Serve
	// life is the ADS server's context: it ends when Serve returns or
	// Shutdown has stopped the gRPC server.
	life    context.Context
	endLife context.CancelFunc

	mu struct {
		sync.Mutex
		streams map[streamKey]*stream // by go-control-plane stream id
		tracked map[*trackedStream]struct{}
		dirty   map[streamKey]*stream // reports not yet written
	}
	kick      chan struct{}
	streamIDs atomic.Int64 // the last ADS stream id given out
}

// New builds a server; Serve starts it.
func New(opts Options) (*Server, error) {
	if opts.State == nil || opts.Cluster == nil {
		return nil, errors.New("xds: State and Cluster are required")
	}
	opts.defaults()
	s := &Server{opts: opts, log: opts.Logger.With("component", "xds"), m: newMetrics(), kick: make(chan struct{}, 1)}
	s.cache = NewCache(opts.State, s.log, s.m)
	s.m.proxies = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kuma_xds_proxies",
		Help: "Distinct proxies with a stream on this replica."}, func() float64 { return float64(s.cache.Proxies()) })
	s.mu.streams = map[streamKey]*stream{}
	s.mu.tracked = map[*trackedStream]struct{}{}
	s.mu.dirty = map[streamKey]*stream{}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.grpc = grpc.NewServer(
		grpc.MaxConcurrentStreams(1<<16),
		// Thousands of mostly idle streams: small buffers, released between writes.
		grpc.ReadBufferSize(16<<10),
		grpc.WriteBufferSize(16<<10),
		grpc.SharedWriteBuffer(true),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(s.grpc, adsService{s})
	s.grpc.RegisterService(&replicasDesc, s)
	// Registered now: the cluster takes leader work only before it starts.
	opts.Cluster.RunWhileLeader("xds-lifecycle", s.runLifecycle)
	if opts.Registry != nil {
		for _, c := range s.m.collectors() {
			if err := opts.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("xds: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Cache exposes the config cache (tests, debugging).
func (s *Server) Cache() *Cache { return s.cache }

// Serve serves ADS on l until ctx ends or Shutdown is called; background
// work (change feed, insight reports, rebalancing, the leader's lifecycle
// loop) stops with it.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.endLife()
	stop := context.AfterFunc(s.life, cancel)
	defer stop()

	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(s.cache.Run)
	run(s.runReporter)
	run(s.runRebalancer)
	run(s.runReregister)

	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(l) }()
	var err error
	select {
	case <-ctx.Done():
		s.grpc.Stop()
		err = <-errc
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown tells every connected proxy to reconnect elsewhere (each stream
// ends with UNAVAILABLE naming another replica), waits up to ctx for the
// streams to end and the last reports to be written, then stops the server.
//
// It is safe before, during or after Serve (a later Serve returns at once).
func (s *Server) Shutdown(ctx context.Context) {
	defer s.endLife()
	hint := s.leastLoadedOther()
	s.mu.Lock()
	for ts := range s.mu.tracked {
		ts.shed(hint)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.flush(fctx, true)
}

// --- streams and callbacks ---

type streamKey struct {
	delta bool
	id    int64
}

// stream is one ADS stream as the callbacks see it.
type stream struct {
	key      resource.Key
	hasNode  bool
	sub      resource.DiscoverySubscription
	versions map[string]string // short type -> last version sent
	closed   bool
	urgent   bool            // its report goes out with the next flush (a connect, disconnect or NACK)
	due      time.Time       // when a report of counters only may go out
	regDoc   []byte          // the Dataplane the proxy sent to register itself, if any
	ctx      context.Context // the stream's: ends when the proxy leaves
}

func (s *Server) openStream(ctx context.Context, k streamKey) error {
	rctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for {
		ok, why := s.opts.Cluster.ServeLocal()
		if ok {
			if why != "" {
				s.log.Debug("serving a proxy from frozen state", "reason", why)
			}
			break
		}
		select {
		case <-rctx.Done():
			return status.Errorf(codes.Unavailable, "replica %s is not ready to serve xDS: %s", s.opts.Cluster.Name(), why)
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.mu.Lock()
	s.mu.streams[k] = &stream{versions: map[string]string{}, ctx: ctx}
	s.mu.Unlock()
	s.m.streams.Inc()
	return nil
}

func (s *Server) closeStream(k streamKey) {
	s.mu.Lock()
	st := s.mu.streams[k]
	delete(s.mu.streams, k)
	if st != nil && st.hasNode {
		now := time.Now().UTC()
		st.sub.DisconnectTime = &now
		st.closed = true
		st.urgent = true
		s.mu.dirty[k] = st
	}
	s.mu.Unlock()
	if st == nil {
		return
	}
	s.m.streams.Dec()
	if st.hasNode {
		s.cache.Detach(st.key)
		s.wake()
	}
}

// firstRequest identifies the proxy, registers its Dataplane if needed and
// attaches it to the cache.
func (s *Server) firstRequest(k streamKey, node *core.Node) error {
	if node.GetId() == "" {
		return status.Error(codes.InvalidArgument, "node.id: required, as {mesh}.{name}")
	}
	key, err := ParseNodeID(node.GetId())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "node.id: %v", err)
	}
	doc := nodeDataplane(node)
	s.mu.Lock()
	st := s.mu.streams[k]
	s.mu.Unlock()
	if st == nil {
		return status.Error(codes.Unavailable, "stream closed")
	}
	// The stream's context: a proxy that leaves cancels its registration.
	if err := s.register(st.ctx, key, doc); err != nil {
		return err
	}
	s.mu.Lock()
	st = s.mu.streams[k]
	if st == nil {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "stream closed")
	}
	now := time.Now().UTC()
	st.key, st.hasNode, st.regDoc = key, true, doc
	st.sub = resource.DiscoverySubscription{
		ID:                     fmt.Sprintf("%s-%s-%t-%d", s.opts.Cluster.Name(), s.opts.Cluster.Instance(), k.delta, k.id),
		ControlPlaneInstanceID: s.opts.Cluster.Name(),
		ReplicaInstance:        s.opts.Cluster.Instance(),
		ConnectTime:            now,
	}
	st.urgent = true
	s.mu.dirty[k] = st
	s.mu.Unlock()
	s.cache.Attach(key)
	s.wake()
	s.log.Debug("proxy connected", "dataplane", key.String(), "delta", k.delta)
	return nil
}

func (s *Server) request(k streamKey, node *core.Node, typeURL, version, nonce string, errDetail string, nack bool) error {
	s.mu.Lock()
	st := s.mu.streams[k]
	first := st != nil && !st.hasNode
	s.mu.Unlock()
	if st == nil {
		return status.Error(codes.Unavailable, "stream closed")
	}
	if first {
		if err := s.firstRequest(k, node); err != nil {
			return err
		}
	}
	kind := 0 // initial
	if nonce != "" {
		kind = 1 // ACK
		if nack {
			kind = 2
		}
	}
	s.m.request(typeURL, kind)
	if nonce == "" {
		if version != "" {
			// A reconnecting proxy says what it has; if it is current it
			// gets no response, and this is its config version.
			s.mu.Lock()
			if _, sent := st.versions[shortType(typeURL)]; !sent {
				st.versions[shortType(typeURL)] = version
			}
			s.mu.Unlock()
		}
		return nil
	}
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	stats := statsFor(&st.sub.Status, typeURL)
	if nack {
		st.sub.Status.Total.ResponsesRejected++
		if stats != nil {
			stats.ResponsesRejected++
		}
		st.sub.Status.LastNACK = &now
		st.sub.Status.LastNACKError = truncate(errDetail, 512)
		st.urgent = true
	} else {
		st.sub.Status.Total.ResponsesAcknowledged++
		if stats != nil {
			stats.ResponsesAcknowledged++
		}
		st.sub.Status.LastACK = &now
	}
	s.mu.dirty[k] = st
	return nil
}

func (s *Server) response(k streamKey, typeURL, version string) {
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.streams[k]
	if st == nil {
		return
	}
	st.sub.Status.Total.ResponsesSent++
	if stats := statsFor(&st.sub.Status, typeURL); stats != nil {
		stats.ResponsesSent++
	}
	st.sub.Status.LastUpdateTime = &now
	st.versions[shortType(typeURL)] = version
	s.mu.dirty[k] = st
}

func statsFor(st *resource.DiscoveryStatus, typeURL string) *resource.DiscoveryStats {
	switch typeURL {
	case typeLDS:
		return &st.LDS
	case typeCDS:
		return &st.CDS
	case typeEDS:
		return &st.EDS
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// streamCallbacks are go-control-plane's callbacks for one stream (each
// stream has a go-control-plane server of its own, whose stream ids would
// all be 1: the stream's key is given here instead).
type streamCallbacks struct {
	s   *Server
	key streamKey
}

func (c *streamCallbacks) OnStreamOpen(ctx context.Context, _ int64, _ string) error {
	return c.s.openStream(ctx, c.key)
}
func (c *streamCallbacks) OnStreamClosed(int64, *core.Node) { c.s.closeStream(c.key) }
func (c *streamCallbacks) OnStreamRequest(_ int64, req *discovery.DiscoveryRequest) error {
	return c.s.request(c.key, req.GetNode(), req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(),
		req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}
func (c *streamCallbacks) OnStreamResponse(_ context.Context, _ int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.response(c.key, resp.GetTypeUrl(), resp.GetVersionInfo())
}
func (c *streamCallbacks) OnDeltaStreamOpen(ctx context.Context, _ int64, _ string) error {
	return c.s.openStream(ctx, c.key)
}
func (c *streamCallbacks) OnDeltaStreamClosed(int64, *core.Node) { c.s.closeStream(c.key) }
func (c *streamCallbacks) OnStreamDeltaRequest(_ int64, req *discovery.DeltaDiscoveryRequest) error {
	return c.s.request(c.key, req.GetNode(), req.GetTypeUrl(), maxVersion(req.GetInitialResourceVersions()), req.GetResponseNonce(),
		req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}
func (c *streamCallbacks) OnStreamDeltaResponse(_ int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.response(c.key, resp.GetTypeUrl(), resp.GetSystemVersionInfo())
}

var (
	_ sotwserver.Callbacks  = (*streamCallbacks)(nil)
	_ deltaserver.Callbacks = (*streamCallbacks)(nil)
)

func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// maxVersion is the version with the highest index among a delta
// request's initial resource versions ("" if none).
func maxVersion(vs map[string]string) string {
	best := ""
	for _, v := range vs {
		if best == "" || versionIndex(v) > versionIndex(best) {
			best = v
		}
	}
	return best
}

// configVersion is the insight's summary of the versions a stream has.
func configVersion(vs map[string]string) string {
	return "lds=" + vs["lds"] + " cds=" + vs["cds"] + " eds=" + vs["eds"]
}
