package envoy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotwserver "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
)

// Type URLs the relay serves.
const (
	TypeListener = resourcev3.ListenerType
	TypeCluster  = resourcev3.ClusterType
	TypeEndpoint = resourcev3.EndpointType
)

// DefaultRelayAddr is where the relay listens unless told otherwise: an
// ephemeral port on the loopback.
const DefaultRelayAddr = "127.0.0.1:0"

// relayKey is the cache's key for the one node the relay serves.
const relayKey = "node"

// RelayOptions configures a Relay.
type RelayOptions struct {
	// NodeID is the node served ("{mesh}.{name}"); a stream from any other
	// node is refused.
	NodeID string
	// Addr is the listen address [DefaultRelayAddr].
	Addr string
	// Logger receives connects, disconnects and NACKs; nil: slog.Default().
	Logger *slog.Logger
}

// Relay is a state-of-the-world ADS server for one node, serving the config
// last given to Set. Each type's version is a digest of its resources, so a
// Set that changes only endpoints re-sends only endpoints.
type Relay struct {
	nodeID string
	log    *slog.Logger
	ln     net.Listener
	cache  cachev3.SnapshotCache
	grpc   *grpc.Server
	cancel context.CancelFunc
	done   chan struct{}

	setMu sync.Mutex // serialises Set, so that the cache ends with the last config
	mu    struct {
		sync.Mutex
		cfg      proxy.Config
		set      bool
		versions map[string]string
		streams  map[int64]map[string]sent // stream → type URL → last response
		acked    map[string]string
		rejected map[string]Rejection
		warned   map[string]string // type URL → version whose NACK was logged
		foreign  string            // last refused node id, logged once
		closed   bool
	}
}

// sent is the last response of one type on one stream.
type sent struct{ nonce, version string }

// Rejection is a NACK: the version refused and Envoy's reason.
type Rejection struct {
	Version string `json:"version"`
	Error   string `json:"error"`
}

// RelayStatus is what the relay knows of the node.
type RelayStatus struct {
	Streams  int                  `json:"streams"`            // open ADS streams (1 while Envoy is connected)
	Versions map[string]string    `json:"versions"`           // type URL → version served
	Acked    map[string]string    `json:"acked"`              // type URL → version last ACKed
	Rejected map[string]Rejection `json:"rejected,omitempty"` // type URL → last NACK
}

// ListenRelay listens on opts.Addr and serves until Close.
func ListenRelay(opts RelayOptions) (*Relay, error) {
	if opts.NodeID == "" {
		return nil, errors.New("relay: NodeID is required")
	}
	log := cmp.Or(opts.Logger, slog.Default()).With("component", "envoy-relay")
	ln, err := net.Listen("tcp", cmp.Or(opts.Addr, DefaultRelayAddr))
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Relay{nodeID: opts.NodeID, log: log, ln: ln, done: make(chan struct{})}
	r.mu.versions = map[string]string{}
	r.mu.streams = map[int64]map[string]sent{}
	r.mu.acked = map[string]string{}
	r.mu.rejected = map[string]Rejection{}
	r.mu.warned = map[string]string{}

	// go-control-plane logs at Warn what is routine here (an EDS request
	// that names other clusters than the snapshot while CDS is in flight).
	glog := gcplog.LoggerFuncs{
		DebugFunc: func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) },
		InfoFunc:  func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) },
		WarnFunc:  func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) },
		ErrorFunc: func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) },
	}
	r.cache = cachev3.NewSnapshotCache(true, constantHash{}, glog)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.grpc = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	xs := serverv3.NewServer(ctx, r.cache, r.callbacks(), sotwserver.WithOrderedADS(), sotwserver.WithLogger(glog))
	discovery.RegisterAggregatedDiscoveryServiceServer(r.grpc, xs)
	go func() {
		defer close(r.done)
		if err := r.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("relay stopped serving", "err", err)
		}
	}()
	log.Debug("relay listening", "address", r.Addr())
	return r, nil
}

// constantHash maps every node to the one snapshot: the node id is checked
// in the stream callbacks.
type constantHash struct{}

func (constantHash) ID(*core.Node) string { return relayKey }

// Addr is the address the relay listens on.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Close stops serving: open streams end at once. It waits for the server's
// goroutines.
func (r *Relay) Close() {
	r.mu.Lock()
	closed := r.mu.closed
	r.mu.closed = true
	r.mu.Unlock()
	if closed {
		<-r.done
		return
	}
	r.cancel()
	r.grpc.Stop()
	<-r.done
}

// Set serves cfg from now on. Listeners and clusters go as given; the load
// assignments served are exactly those of cfg's EDS clusters (in ADS mode
// the cache answers an EDS request only with the names it asked for), an
// EDS cluster without one in cfg getting an empty one, as Envoy would have
// after its initial fetch timeout. cfg is not modified.
func (r *Relay) Set(cfg proxy.Config) error {
	r.setMu.Lock()
	defer r.setMu.Unlock()

	listeners := sortedResources(cfg.Listeners)
	clusters := sortedResources(cfg.Clusters)
	var endpoints []types.Resource
	for _, name := range edsNames(cfg.Clusters) {
		cla := cfg.Endpoints[name]
		switch {
		case cla == nil:
			cla = &endpointv3.ClusterLoadAssignment{ClusterName: name}
		case cla.GetClusterName() != name:
			cla = proto.Clone(cla).(*endpointv3.ClusterLoadAssignment)
			cla.ClusterName = name
		}
		endpoints = append(endpoints, cla)
	}

	snap := &cachev3.Snapshot{}
	versions := map[string]string{}
	for _, t := range []struct {
		typeURL string
		index   types.ResponseType
		items   []types.Resource
	}{
		{TypeListener, types.Listener, listeners},
		{TypeCluster, types.Cluster, clusters},
		{TypeEndpoint, types.Endpoint, endpoints},
	} {
		v, err := digest(t.items)
		if err != nil {
			return fmt.Errorf("relay: %s: %w", shortType(t.typeURL), err)
		}
		versions[t.typeURL] = v
		snap.Resources[t.index] = cachev3.NewResources(v, t.items)
	}
	if err := r.cache.SetSnapshot(context.Background(), relayKey, snap); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.mu.Lock()
	r.mu.cfg, r.mu.set, r.mu.versions = cfg, true, versions
	r.mu.Unlock()
	r.log.Debug("config set", "versions", versions, "listeners", len(listeners), "clusters", len(clusters))
	return nil
}

// Config is the config last given to Set (false before the first Set).
func (r *Relay) Config() (proxy.Config, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.cfg, r.mu.set
}

// Status is what the relay knows of the node.
func (r *Relay) Status() RelayStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RelayStatus{
		Streams:  len(r.mu.streams),
		Versions: maps.Clone(r.mu.versions),
		Acked:    maps.Clone(r.mu.acked),
		Rejected: maps.Clone(r.mu.rejected),
	}
}

func (r *Relay) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			r.mu.Lock()
			r.mu.streams[id] = map[string]sent{}
			n := len(r.mu.streams)
			r.mu.Unlock()
			r.log.Debug("ADS stream opened", "stream", id, "streams", n)
			return nil
		},
		StreamClosedFunc: func(id int64, node *core.Node) {
			r.mu.Lock()
			delete(r.mu.streams, id)
			n := len(r.mu.streams)
			r.mu.Unlock()
			r.log.Debug("ADS stream closed", "stream", id, "node", node.GetId(), "streams", n)
		},
		StreamRequestFunc:   r.onRequest,
		StreamResponseFunc:  r.onResponse,
		DeltaStreamOpenFunc: func(context.Context, int64, string) error { return errDelta },
		FetchRequestFunc:    func(context.Context, *discovery.DiscoveryRequest) error { return errFetch },
	}
}

var (
	errDelta = status.Error(codes.Unimplemented, "the kuma-dp relay serves state-of-the-world ADS only (api_type GRPC)")
	errFetch = status.Error(codes.Unimplemented, "the kuma-dp relay serves ADS only")
)

// onRequest refuses other nodes and records ACKs and NACKs; a NACK is
// logged at WARN once per type and version: Envoy keeps running the
// previous config of that type, and the agent is not told (its Validate
// said yes).
func (r *Relay) onRequest(id int64, req *discovery.DiscoveryRequest) error {
	if got := req.GetNode().GetId(); got != r.nodeID {
		r.mu.Lock()
		first := r.mu.foreign != got
		r.mu.foreign = got
		r.mu.Unlock()
		if first {
			r.log.Warn("refusing an ADS stream from another node", "node", got, "serves", r.nodeID)
		}
		return status.Errorf(codes.PermissionDenied, "this relay serves node %q, not %q", r.nodeID, got)
	}
	if req.GetResponseNonce() == "" {
		return nil // a subscription, not an answer
	}
	typ := req.GetTypeUrl()
	r.mu.Lock()
	last := r.mu.streams[id][typ]
	if last.nonce != req.GetResponseNonce() {
		r.mu.Unlock()
		return nil // about an older response: the server ignores it too
	}
	if req.GetErrorDetail() == nil {
		r.mu.acked[typ] = req.GetVersionInfo()
		r.mu.Unlock()
		return nil
	}
	rej := Rejection{Version: last.version, Error: req.GetErrorDetail().GetMessage()}
	r.mu.rejected[typ] = rej
	logIt := r.mu.warned[typ] != rej.Version
	r.mu.warned[typ] = rej.Version
	r.mu.Unlock()
	// The cache answers a request whose version differs from the
	// snapshot's at once: it would send the rejected config straight back,
	// and Envoy and the relay would trade it and the NACK in a busy loop.
	// Taken as having the rejected version, Envoy gets the next change of
	// this type instead.
	keeps := req.GetVersionInfo()
	req.VersionInfo = rej.Version
	if logIt {
		r.log.Warn("Envoy rejected the config (NACK); it keeps running the previous one of this type",
			"type", shortType(typ), "version", rej.Version, "keeps", keeps, "err", rej.Error)
	}
	return nil
}

func (r *Relay) onResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.mu.streams[id]; s != nil {
		s[resp.GetTypeUrl()] = sent{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
	}
}

// sortedResources returns m's values sorted by key.
func sortedResources[M ~map[string]V, V types.Resource](m M) []types.Resource {
	out := make([]types.Resource, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// edsNames returns the sorted EDS service names of the EDS clusters.
func edsNames(clusters map[string]*clusterv3.Cluster) []string {
	var out []string
	for name, c := range clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		out = append(out, cmp.Or(c.GetEdsClusterConfig().GetServiceName(), name))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// digest is the version of one type: a hash of its resources, in order,
// each marshalled deterministically.
func digest(items []types.Resource) (string, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	var n [binary.MaxVarintLen64]byte
	for _, it := range items {
		var err error
		buf, err = opts.MarshalAppend(buf[:0], it)
		if err != nil {
			return "", fmt.Errorf("%s: %w", cachev3.GetResourceName(it), err)
		}
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(buf)))])
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

func shortType(typeURL string) string {
	switch typeURL {
	case TypeListener:
		return "listeners"
	case TypeCluster:
		return "clusters"
	case TypeEndpoint:
		return "endpoints"
	}
	return typeURL
}
