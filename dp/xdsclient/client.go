package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// ShedPrefix starts the message of the UNAVAILABLE status a replica ends a
// stream with when it sheds it (rebalancing, shutdown); the address of the
// replica to use instead follows. It is the control plane's xds.ShedPrefix,
// repeated here because this package imports no server package.
const ShedPrefix = "kuma-cp: reconnect to another replica: "

// RegisterUnavailablePrefix starts the message of the UNAVAILABLE status a
// replica refuses a proxy with when it cannot write its Dataplane now (no
// quorum); the control plane's xds.RegisterUnavailablePrefix, repeated.
const RegisterUnavailablePrefix = "cannot register Dataplane "

// MetadataDataplane is the node metadata field carrying the Dataplane
// document for self-registration.
const MetadataDataplane = "dataplane.resource"

// ShedHint returns the replica address named by a stream that ended with
// an UNAVAILABLE status starting with ShedPrefix, or "".
func ShedHint(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return ""
	}
	rest, ok := strings.CutPrefix(st.Message(), ShedPrefix)
	if !ok {
		return ""
	}
	addr, err := NormalizeAddress(rest)
	if err != nil {
		return ""
	}
	return addr
}

// Status describes a client's connection.
type Status struct {
	Server     string // replica of the current stream, "" when not connected
	Connected  bool
	Reconnects int // streams opened after the first one
	Responses  int // responses received
	ACKs       int
	NACKs      int
	LastError  error // why the last stream ended, or the last NACK
	// Failures counts the attempts that failed in a row since the last
	// stream that worked (one that got a response or lived a while):
	// Failures >= len(Servers) while not Connected means that every known
	// replica was tried and none could be reached.
	Failures int
	// Servers are the replica addresses the client knows (given and discovered).
	Servers []string
}

// Client is one proxy's ADS client. Create it with New and start it with Run.
type Client struct {
	cfg     Config
	log     *slog.Logger
	node    *core.Node
	decode  *decodeCache
	snap    atomic.Pointer[Snapshot]
	updates chan struct{}
	running atomic.Bool

	mu struct {
		sync.Mutex
		discovered []string
		status     Status
		opened     bool                 // a stream was opened before
		failedAt   map[string]time.Time // replicas whose last attempt failed, and when
	}
	discoverCh chan struct{} // asks runDiscover for an early round
}

// New checks cfg and returns a client; it does not connect (see Run).
func New(cfg Config) (*Client, error) {
	cfg.Servers = slices.Clone(cfg.Servers)
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("xdsclient: %w", err)
	}
	c := &Client{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "xdsclient", "node", cfg.NodeID),
		updates:    make(chan struct{}, 1),
		discoverCh: make(chan struct{}, 1),
	}
	c.mu.failedAt = map[string]time.Time{}
	c.node = &core.Node{Id: cfg.NodeID, UserAgentName: "kuma-ha-xdsclient"}
	if len(cfg.Dataplane) > 0 {
		c.node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{
			MetadataDataplane: structpb.NewStringValue(string(cfg.Dataplane)),
		}}
	}
	if cfg.Fleet != nil {
		c.decode = cfg.Fleet.decode
	}
	initial := emptySnapshot()
	if in := cfg.Initial; in != nil {
		initial = in.clone()
		if initial.Listeners == nil {
			initial.Listeners = emptySnapshot().Listeners
		}
		if initial.Clusters == nil {
			initial.Clusters = emptySnapshot().Clusters
		}
		if initial.Endpoints == nil {
			initial.Endpoints = emptySnapshot().Endpoints
		}
	}
	c.snap.Store(initial)
	return c, nil
}

// Snapshot returns the config in use (never nil; empty before the first
// response unless Config.Initial was given).
func (c *Client) Snapshot() *Snapshot { return c.snap.Load() }

// Updates is signalled after every accepted change; signals coalesce (the
// channel holds one), so read Snapshot after each.
func (c *Client) Updates() <-chan struct{} { return c.updates }

// Status returns the connection state and counters.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.mu.status
	st.Servers = c.serversLocked()
	return st
}

// Run connects and keeps a stream to one replica until ctx ends, failing
// over between replicas. It returns nil when ctx ends; an error only if the
// client is already running.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("xdsclient: Run called twice")
	}
	defer c.running.Store(false)
	var wg sync.WaitGroup
	if c.cfg.Discover != nil {
		wg.Go(func() { c.runDiscover(ctx) })
	}
	defer wg.Wait()

	var last, hint string
	for ctx.Err() == nil {
		addr := c.pick(last, hint)
		last, hint = addr, ""
		s := &session{c: c, addr: addr}
		err := s.run(ctx)
		c.mu.Lock()
		c.mu.status.Server, c.mu.status.Connected = "", false
		if ctx.Err() != nil {
			c.mu.Unlock()
			break
		}
		c.mu.status.LastError = err
		if s.healthy() {
			c.mu.status.Failures = 0
			delete(c.mu.failedAt, addr)
		} else {
			c.mu.status.Failures++
			c.mu.failedAt[addr] = time.Now()
		}
		failures := c.mu.status.Failures
		c.mu.Unlock()
		hint = ShedHint(err)
		var delay time.Duration
		if hint != "" {
			// The replica asked us to move: go now (with a little jitter so
			// that shed proxies do not arrive together).
			c.log.Info("replica asked to reconnect elsewhere", "server", addr, "to", hint)
			delay = time.Duration(rand.Int64N(int64(c.cfg.MinBackoff) + 1))
		} else {
			if s.opened {
				c.log.Warn("xDS stream lost", "server", addr, "err", err)
			} else {
				c.log.Debug("cannot open an xDS stream", "server", addr, "err", err)
			}
			delay = c.backoff(failures)
		}
		c.kickDiscover()
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	return nil
}

// backoff is the wait before the next attempt after n consecutive
// failures: exponential from MinBackoff, capped at MaxBackoff, jittered
// into [d/2, d].
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff
	for i := 0; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	half := int64(d / 2)
	return time.Duration(half + rand.Int64N(half+1))
}

// avoidFor is how long a replica whose last attempt failed is passed over
// while another one has not failed.
const avoidFor = 3 * time.Second

// pick chooses the replica for the next stream: the hinted one if any,
// else, round robin from the one after last (the first if none), the first
// that has not failed within avoidFor, else simply the next one.
func (c *Client) pick(last, hint string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	servers := c.serversLocked()
	if hint != "" {
		return hint
	}
	start := 0
	if last != "" {
		start = slices.Index(servers, last) + 1 // 0 when last is no longer listed
	}
	now := time.Now()
	for k := range servers {
		s := servers[(start+k)%len(servers)]
		if t, failed := c.mu.failedAt[s]; !failed || now.Sub(t) > avoidFor {
			return s
		}
	}
	return servers[start%len(servers)]
}

// serversLocked is the given servers followed by the discovered ones, without duplicates.
func (c *Client) serversLocked() []string {
	out := slices.Clone(c.cfg.Servers)
	for _, s := range c.mu.discovered {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (c *Client) kickDiscover() {
	select {
	case c.discoverCh <- struct{}{}:
	default:
	}
}

// runDiscover calls Config.Discover at start, every DiscoverInterval and
// when a stream breaks (at most once per MinBackoff).
func (c *Client) runDiscover(ctx context.Context) {
	t := time.NewTicker(c.cfg.DiscoverInterval)
	defer t.Stop()
	var lastLog string
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := c.cfg.Discover(dctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var good []string
		for _, a := range addrs {
			if n, err := NormalizeAddress(a); err == nil && !slices.Contains(good, n) {
				good = append(good, n)
			}
		}
		if err != nil || len(good) == 0 {
			msg := fmt.Sprint(err)
			if msg != lastLog {
				c.log.Debug("cannot discover replicas", "err", err)
				lastLog = msg
			}
		} else {
			lastLog = ""
			c.mu.Lock()
			if !slices.Equal(good, c.mu.discovered) {
				c.log.Debug("discovered replicas", "servers", good)
			}
			c.mu.discovered = good
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.discoverCh:
		}
		select { // rate limit the early rounds
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.MinBackoff):
		}
	}
}

// connect returns a connection to addr and its release function.
func (c *Client) connect(addr string) (*grpc.ClientConn, func(), error) {
	if c.cfg.Fleet != nil {
		return c.cfg.Fleet.acquire(addr)
	}
	cc, err := dial(addr, keepalive.ClientParameters{Time: c.cfg.KeepaliveTime, Timeout: c.cfg.KeepaliveTimeout})
	if err != nil {
		return nil, nil, err
	}
	return cc, func() { _ = cc.Close() }, nil
}

// publish makes n the current snapshot and signals it.
func (c *Client) publish(n *Snapshot) {
	c.snap.Store(n)
	select {
	case c.updates <- struct{}{}:
	default:
	}
	if c.cfg.OnUpdate != nil {
		c.cfg.OnUpdate(n)
	}
}

func (c *Client) noteConnected(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.opened {
		c.mu.status.Reconnects++
	}
	c.mu.opened = true
	c.mu.status.Server, c.mu.status.Connected = addr, true
}

func (c *Client) noteResponse() {
	c.mu.Lock()
	c.mu.status.Responses++
	c.mu.Unlock()
}

func (c *Client) noteAck(nack error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nack != nil {
		c.mu.status.NACKs++
		c.mu.status.LastError = nack
		return
	}
	c.mu.status.ACKs++
}
