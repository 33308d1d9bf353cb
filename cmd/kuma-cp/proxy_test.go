package main

// testProxy is an ADS client that behaves like Envoy for the integration
// tests: LDS and CDS wildcard, EDS for the EDS clusters of its CDS, every
// resource checked with ValidateAll, ACK (or NACK), versions kept across
// reconnects, and failover to the next replica, or to the one the control
// plane names when it closes the stream to rebalance.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/kuma-ha/kuma-ha/xds"
)

type validating interface {
	proto.Message
	ValidateAll() error
}

// proxyConfig is what a proxy has accepted, per type URL.
type proxyConfig struct {
	versions map[string]string
	raw      map[string]map[string][]byte // type -> name -> serialized resource
	server   string
}

type testProxy struct {
	t      *testing.T
	nodeID string
	doc    string

	mu struct {
		sync.Mutex
		addrs      []string
		cur        int
		cfg        proxyConfig
		reject     bool // NACK the next response
		maxIndex   map[string]uint64
		backwards  []string // versions that went back in time
		reconnects int
		shed       int // streams the control plane closed with a hint
		lastErr    error
		stream     string   // replica address of the current stream (requests sent), "" between streams
		events     []string // how each stream ended, for failure messages
	}
	updated chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

func newTestProxy(t *testing.T, nodeID, doc string, addrs []string, first int) *testProxy {
	p := &testProxy{t: t, nodeID: nodeID, doc: doc, updated: make(chan struct{}, 1), done: make(chan struct{})}
	p.mu.addrs, p.mu.cur = addrs, first
	p.mu.cfg = proxyConfig{versions: map[string]string{}, raw: map[string]map[string][]byte{}}
	p.mu.maxIndex = map[string]uint64{}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(ctx)
	t.Cleanup(p.stop)
	return p
}

func (p *testProxy) stop() {
	p.cancel()
	<-p.done
}

// moveTo makes the proxy reconnect to replica i (closes the current stream).
func (p *testProxy) moveTo(i int, cancelStream func()) {
	p.mu.Lock()
	p.mu.cur = i
	p.mu.Unlock()
	cancelStream()
}

func (p *testProxy) run(ctx context.Context) {
	defer close(p.done)
	for ctx.Err() == nil {
		p.mu.Lock()
		addr := p.mu.addrs[p.mu.cur]
		p.mu.Unlock()
		err := p.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.mu.lastErr = err
		p.mu.reconnects++
		p.mu.events = append(p.mu.events, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), addr, err))
		if hint := xds.ShedHint(err); hint != "" && slices.Contains(p.mu.addrs, hint) {
			p.mu.shed++
			p.mu.cur = slices.Index(p.mu.addrs, hint)
		} else if !errors.Is(err, errMoved) {
			p.mu.cur = (p.mu.cur + 1) % len(p.mu.addrs)
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // reconnect backoff
		}
	}
}

var errMoved = errors.New("moved by the test")

// sessions registers here so moveTo can end them.
var sessionCancels sync.Map // *testProxy -> context.CancelFunc

func (p *testProxy) session(ctx context.Context, addr string) (err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	moved := make(chan struct{})
	var once sync.Once
	sessionCancels.Store(p, func() { once.Do(func() { close(moved) }); cancel() })
	defer sessionCancels.Delete(p)
	defer func() {
		// However the stream broke (a failed Send is io.EOF), a move ended it.
		select {
		case <-moved:
			err = errMoved
		default:
		}
	}()

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	s, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	if err != nil {
		return err
	}
	node := &core.Node{Id: p.nodeID}
	if p.doc != "" {
		node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{xds.MetadataDataplane: structpb.NewStringValue(p.doc)}}
	}
	p.mu.Lock()
	versions := map[string]string{}
	for k, v := range p.mu.cfg.versions {
		versions[k] = v
	}
	edsNames := edsClusterNames(p.mu.cfg.raw[resourcev3.ClusterType])
	p.mu.Unlock()
	send := func(req *discovery.DiscoveryRequest) error {
		req.Node = node
		return s.Send(req)
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
		if err := send(&discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: versions[typ]}); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.mu.stream = addr
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.mu.stream = ""
		p.mu.Unlock()
	}()
	if len(edsNames) > 0 {
		if err := send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: versions[resourcev3.EndpointType], ResourceNames: edsNames}); err != nil {
			return err
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		parsed, verr := parseResources(resp)
		p.mu.Lock()
		reject := p.mu.reject && verr == nil
		if reject {
			p.mu.reject = false
			verr = errors.New("test: rejected on purpose")
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce(), VersionInfo: p.mu.cfg.versions[typ]}
		if typ == resourcev3.EndpointType {
			ack.ResourceNames = edsNames
		}
		if verr != nil {
			ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: verr.Error()}
		} else {
			idx := versionIndex(resp.GetVersionInfo())
			if idx < p.mu.maxIndex[typ] {
				p.mu.backwards = append(p.mu.backwards, fmt.Sprintf("%s %s after index %d from %s", typ, resp.GetVersionInfo(), p.mu.maxIndex[typ], addr))
			}
			p.mu.maxIndex[typ] = max(p.mu.maxIndex[typ], idx)
			p.mu.cfg.versions[typ] = resp.GetVersionInfo()
			p.mu.cfg.raw[typ] = parsed
			p.mu.cfg.server = addr
			ack.VersionInfo = resp.GetVersionInfo()
		}
		var newEDS []string
		if typ == resourcev3.ClusterType && verr == nil {
			newEDS = edsClusterNames(parsed)
		}
		p.mu.Unlock()
		if err := send(ack); err != nil {
			return err
		}
		if typ == resourcev3.ClusterType && verr == nil && !slices.Equal(newEDS, edsNames) {
			edsNames = newEDS
			p.mu.Lock()
			v := p.mu.cfg.versions[resourcev3.EndpointType]
			p.mu.Unlock()
			if err := send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: v, ResourceNames: edsNames}); err != nil {
				return err
			}
		}
		select {
		case p.updated <- struct{}{}:
		default:
		}
	}
}

func parseResources(resp *discovery.DiscoveryResponse) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, a := range resp.GetResources() {
		var m validating
		var name string
		switch resp.GetTypeUrl() {
		case resourcev3.ListenerType:
			m = &listenerv3.Listener{}
		case resourcev3.ClusterType:
			m = &clusterv3.Cluster{}
		case resourcev3.EndpointType:
			m = &endpointv3.ClusterLoadAssignment{}
		default:
			return nil, fmt.Errorf("unexpected type %s", resp.GetTypeUrl())
		}
		if err := a.UnmarshalTo(m); err != nil {
			return nil, err
		}
		if err := m.ValidateAll(); err != nil {
			return nil, err
		}
		switch r := m.(type) {
		case *listenerv3.Listener:
			name = r.GetName()
			for _, fc := range r.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					tcp := &tcpv3.TcpProxy{}
					if err := f.GetTypedConfig().UnmarshalTo(tcp); err != nil {
						return nil, err
					}
					if err := tcp.ValidateAll(); err != nil {
						return nil, err
					}
				}
			}
		case *clusterv3.Cluster:
			name = r.GetName()
		case *endpointv3.ClusterLoadAssignment:
			name = r.GetClusterName()
		}
		out[name] = a.GetValue()
	}
	return out, nil
}

func edsClusterNames(clusters map[string][]byte) []string {
	var names []string
	for name, b := range clusters {
		c := &clusterv3.Cluster{}
		if proto.Unmarshal(b, c) == nil && c.GetType() == clusterv3.Cluster_EDS {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func versionIndex(v string) uint64 {
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

// config returns a copy of what the proxy has.
func (p *testProxy) config() proxyConfig {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := proxyConfig{versions: map[string]string{}, raw: map[string]map[string][]byte{}, server: p.mu.cfg.server}
	for k, v := range p.mu.cfg.versions {
		c.versions[k] = v
	}
	for k, v := range p.mu.cfg.raw {
		c.raw[k] = v
	}
	return c
}

// endpoints returns the addresses of the EDS cluster name.
func (c proxyConfig) endpoints(name string) []string {
	b, ok := c.raw[resourcev3.EndpointType][name]
	if !ok {
		return nil
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if proto.Unmarshal(b, cla) != nil {
		return nil
	}
	var out []string
	for _, le := range cla.GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	slices.Sort(out)
	return out
}

// tcpProxy returns the TCP proxy of listener name.
func (c proxyConfig) tcpProxy(name string) *tcpv3.TcpProxy {
	b, ok := c.raw[resourcev3.ListenerType][name]
	if !ok {
		return nil
	}
	l := &listenerv3.Listener{}
	if proto.Unmarshal(b, l) != nil || len(l.GetFilterChains()) == 0 {
		return nil
	}
	tcp := &tcpv3.TcpProxy{}
	if l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(tcp) != nil {
		return nil
	}
	return tcp
}

// waitConfig waits until cond holds for the proxy's config.
func (p *testProxy) waitConfig(what string, within time.Duration, cond func(c proxyConfig) bool) proxyConfig {
	p.t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		c := p.config()
		if cond(c) {
			return c
		}
		select {
		case <-p.updated:
		case <-deadline.C:
			p.mu.Lock()
			err := p.mu.lastErr
			p.mu.Unlock()
			p.t.Fatalf("%s: %s not within %s (versions %v, server %s, last error %v)", p.nodeID, what, within, c.versions, c.server, err)
		}
	}
}

// history returns how the proxy's last streams ended.
func (p *testProxy) history() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.mu.events[max(0, len(p.mu.events)-6):])
}

// streamAddr is the replica the proxy has a stream open to ("" if none).
func (p *testProxy) streamAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.stream
}

func (p *testProxy) rejectNext() {
	p.mu.Lock()
	p.mu.reject = true
	p.mu.Unlock()
}

func (p *testProxy) backwards() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.mu.backwards)
}

func (p *testProxy) shedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.shed
}

func (p *testProxy) reconnects() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.reconnects
}

// move ends the current stream and reconnects to replica i.
func (p *testProxy) move(i int) {
	if c, ok := sessionCancels.Load(p); ok {
		p.moveTo(i, c.(func()))
		return
	}
	p.mu.Lock()
	p.mu.cur = i
	p.mu.Unlock()
}
