package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
	"github.com/kuma-ha/kuma-ha/dp/xdsclient"
)

// Engine is what carries the traffic: the built-in proxy (Builtin) or
// Envoy fed through a local xDS relay (see dp/envoy). The agent hands it
// every complete config the control plane sends, or the one saved in the
// state dir.
type Engine interface {
	// Validate tells whether the engine can run cfg; an error NACKs the
	// response that made it, and the config in use stays.
	Validate(cfg proxy.Config) error
	// Apply installs cfg without dropping established connections.
	Apply(cfg proxy.Config) error
	// Status is the engine's listeners and clusters, served on /status.
	Status() proxy.Status
	// Shutdown stops accepting connections and drains the rest until ctx ends.
	Shutdown(ctx context.Context) error
}

// Builtin adapts the built-in proxy to Engine.
type Builtin struct{ *proxy.Proxy }

func (Builtin) Validate(cfg proxy.Config) error { return proxy.Validate(cfg) }

var _ Engine = Builtin{}

// Config configures an Agent.
type Config struct {
	// NodeID is "{mesh}.{name}".
	NodeID string
	// Dataplane is the proxy's Dataplane document, sent to register it;
	// nil for a Dataplane that already exists.
	Dataplane []byte
	// Servers are xDS addresses of replicas (more are learned from them).
	Servers []string
	// Delta selects incremental xDS.
	Delta bool
	// State is where the last good config is kept (required).
	State *StateDir
	// AdminAddr is the admin HTTP listener ("" for none).
	AdminAddr string
	// Engine carries the traffic (required).
	Engine Engine
	// DrainTime bounds Shutdown's drain [30s].
	DrainTime time.Duration
	// ProbeInterval and ProbeTimeout: the replica of the stream is asked
	// whether it is alive every ProbeInterval and left after two probes in
	// a row went unanswered within ProbeTimeout [1s, 1s]: a paused replica
	// is left within about 3 s. (gRPC keepalive alone takes at least 10 s.)
	ProbeInterval, ProbeTimeout time.Duration
	Logger                      *slog.Logger
}

// Agent runs one proxy: an xDS client that fails over between replicas, the
// engine that carries traffic, the persisted last good config and the admin
// endpoint.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client *xdsclient.Client
	admin  net.Listener

	mu struct {
		sync.Mutex
		applied     *xdsclient.Snapshot // the config the engine runs
		source      string              // sourceControlPlane or sourceStateDir
		appliedAt   time.Time
		applyErr    error
		frozen      bool
		frozenSince time.Time
		draining    bool
		saveErr     error
	}
}

const (
	sourceControlPlane = "control-plane"
	sourceStateDir     = "state-dir"
)

// New checks cfg, loads the saved config (if any) into the engine at once,
// and opens the admin listener, so that a proxy restarted while every
// replica is down serves traffic before Run is even called.
func New(cfg Config) (*Agent, error) {
	if cfg.State == nil || cfg.Engine == nil {
		return nil, errors.New("agent: State and Engine are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DrainTime <= 0 {
		cfg.DrainTime = 30 * time.Second
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = time.Second
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "kuma-dp", "node", cfg.NodeID)}

	saved, savedAt, err := cfg.State.Load(cfg.NodeID)
	if err != nil {
		a.log.Warn("ignoring the saved config", "err", err)
		saved = nil
	}
	if saved != nil {
		if err := a.apply(saved, sourceStateDir); err != nil {
			a.log.Warn("the saved config could not be applied in full", "err", err)
		}
		a.log.Info("serving the config saved in the state dir until a control plane replica answers",
			"savedAt", savedAt, "versions", saved.Versions, "listeners", len(saved.Listeners))
	}

	var client *xdsclient.Client
	client, err = xdsclient.New(xdsclient.Config{
		NodeID:    cfg.NodeID,
		Dataplane: cfg.Dataplane,
		Servers:   cfg.Servers,
		Delta:     cfg.Delta,
		Logger:    cfg.Logger,
		Discover: xdsclient.DiscoverFromXDS(func() []string {
			return client.Status().Servers
		}),
		DiscoverInterval: 10 * time.Second,
		Reject: func(typeURL string, resources []proto.Message) error {
			return a.reject(client, typeURL, resources)
		},
		Initial:          saved,
		KeepaliveTime:    10 * time.Second, // grpc-go's floor
		KeepaliveTimeout: 3 * time.Second,
		ProbeInterval:    cfg.ProbeInterval,
		ProbeTimeout:     cfg.ProbeTimeout,
	})
	if err != nil {
		return nil, err
	}
	a.client = client
	if cfg.AdminAddr != "" {
		l, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return nil, fmt.Errorf("--admin-addr %s: %w", cfg.AdminAddr, err)
		}
		a.admin = l
	}
	return a, nil
}

// AdminAddr is the admin listener's address ("" without one).
func (a *Agent) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr().String()
}

// Run serves until ctx ends, then drains the engine (bounded by DrainTime;
// what is still open then is closed) and returns. Every goroutine it
// starts has ended when it returns.
func (a *Agent) Run(ctx context.Context) error {
	cctx, stopClient := context.WithCancel(context.Background())
	defer stopClient()
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.client.Run(cctx) })
	wg.Go(func() { a.runApply(cctx) })
	wg.Go(func() { a.runWatch(cctx) })
	var srv *http.Server
	if a.admin != nil {
		srv = &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(a.admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("admin server", "err", err)
			}
		})
	}

	<-ctx.Done()
	a.log.Info("draining", "drainTime", a.cfg.DrainTime)
	a.mu.Lock()
	a.mu.draining = true
	a.mu.Unlock()
	stopClient() // the replicas see the proxy leave at once
	dctx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTime)
	err := a.cfg.Engine.Shutdown(dctx)
	cancel()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	if err != nil {
		// Cutting what outlived the drain time is what the bound is for.
		a.log.Warn("stopped: connections still open after the drain time were closed", "err", err)
		return nil
	}
	a.log.Info("stopped")
	return nil
}

// reject is the xDS client's validation hook: the candidate config (the
// accepted one with these resources replaced) must be one the engine can
// run, or the response is NACKed.
func (a *Agent) reject(c *xdsclient.Client, typeURL string, resources []proto.Message) error {
	cand := engineConfig(c.Snapshot())
	switch typeURL {
	case xdsclient.TypeListener:
		if !a.cfg.Delta { // state of the world: the response is the whole set
			cand.Listeners = map[string]*listenerv3.Listener{}
		}
		for _, m := range resources {
			l := m.(*listenerv3.Listener)
			cand.Listeners[l.GetName()] = l
		}
	case xdsclient.TypeCluster:
		if !a.cfg.Delta {
			cand.Clusters = map[string]*clusterv3.Cluster{}
		}
		for _, m := range resources {
			cl := m.(*clusterv3.Cluster)
			cand.Clusters[cl.GetName()] = cl
		}
	default:
		return nil // endpoints: checked with the clusters that use them when applied
	}
	return a.cfg.Engine.Validate(cand)
}

// engineConfig is the engine's view of a snapshot, in maps of its own.
func engineConfig(s *xdsclient.Snapshot) proxy.Config {
	cfg := proxy.Config{Listeners: maps.Clone(s.Listeners), Clusters: maps.Clone(s.Clusters), Endpoints: maps.Clone(s.Endpoints)}
	if cfg.Listeners == nil {
		cfg.Listeners = map[string]*listenerv3.Listener{}
	}
	if cfg.Clusters == nil {
		cfg.Clusters = map[string]*clusterv3.Cluster{}
	}
	if cfg.Endpoints == nil {
		cfg.Endpoints = map[string]*endpointv3.ClusterLoadAssignment{}
	}
	return cfg
}

// runApply hands every complete config to the engine and saves it.
func (a *Agent) runApply(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.client.Updates():
		}
		snap := a.client.Snapshot()
		if !snap.Complete() {
			continue
		}
		a.mu.Lock()
		same := a.mu.applied == snap
		a.mu.Unlock()
		if same {
			continue
		}
		if err := a.apply(snap, sourceControlPlane); err != nil {
			a.log.Warn("config applied in part", "err", err)
		}
		err := a.cfg.State.Save(a.cfg.NodeID, snap, time.Now())
		a.mu.Lock()
		prev := a.mu.saveErr
		a.mu.saveErr = err
		a.mu.Unlock()
		if err != nil && (prev == nil || prev.Error() != err.Error()) {
			a.log.Error("cannot save the config in the state dir; a restart without a control plane would start empty", "err", err)
		}
	}
}

func (a *Agent) apply(snap *xdsclient.Snapshot, source string) error {
	err := a.cfg.Engine.Apply(engineConfig(snap))
	a.mu.Lock()
	first := a.mu.applied == nil
	a.mu.applied, a.mu.source, a.mu.appliedAt, a.mu.applyErr = snap, source, time.Now(), err
	a.mu.Unlock()
	if first && source == sourceControlPlane {
		a.log.Info("config received; serving", "server", snap.Server, "versions", snap.Versions, "listeners", len(snap.Listeners))
	} else {
		a.log.Debug("config applied", "server", snap.Server, "versions", snap.Versions)
	}
	return err
}

// watchEvery is how often runWatch looks at the client's state.
const watchEvery = 250 * time.Millisecond

// runWatch turns the client's state into log lines said once, not in a
// loop: frozen and thawed, and why a proxy cannot get config (a
// registration refused, an unknown Dataplane).
func (a *Agent) runWatch(ctx context.Context) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var (
		lastReason      string
		saidUnreachable bool
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := a.client.Status()
		// Every known replica was tried since the last stream that worked.
		allFailed := !st.Connected && st.Failures >= len(st.Servers)
		a.mu.Lock()
		hasConfig := a.mu.applied != nil
		wasFrozen := a.mu.frozen
		frozen := hasConfig && allFailed
		if frozen && !wasFrozen {
			a.mu.frozen, a.mu.frozenSince = true, time.Now()
		} else if wasFrozen && st.Connected {
			a.mu.frozen = false
		}
		since := a.mu.frozenSince
		a.mu.Unlock()
		unreachable := !hasConfig && allFailed && refusal(st.LastError) == ""
		switch {
		case unreachable && !saidUnreachable:
			a.log.Warn("no control plane replica is reachable, and there is no saved config to serve; retrying",
				"replicas", st.Servers, "lastError", errString(st.LastError))
			saidUnreachable = true
		case st.Connected && saidUnreachable:
			a.log.Info("control plane reachable", "server", st.Server)
			saidUnreachable = false
		}
		switch {
		case frozen && !wasFrozen:
			a.log.Warn("no control plane replica is reachable: serving the last good config, frozen, until one is",
				"replicas", st.Servers, "lastError", errString(st.LastError))
		case wasFrozen && st.Connected:
			a.log.Info("control plane reachable again; leaving frozen config", "server", st.Server,
				"frozenFor", time.Since(since).Round(time.Millisecond))
		}
		if reason := refusal(st.LastError); reason != "" && !st.Connected && reason != lastReason {
			a.log.Error("the control plane refuses this proxy", "reason", reason)
			lastReason = reason
		} else if st.Connected && st.Responses > 0 {
			lastReason = ""
		}
	}
}

// refusal is the control plane's reason for refusing the proxy (its
// Dataplane is invalid, unknown, or cannot be registered without a
// quorum), or "" for an error that is only about reaching a replica.
func refusal(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied:
		return st.Message()
	case codes.Unavailable:
		if strings.HasPrefix(st.Message(), xdsclient.RegisterUnavailablePrefix) {
			return st.Message()
		}
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
