package xds

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// fakeCluster applies commands straight to the FSM, like a one-replica
// cluster; unit tests only (the integration tests use real replicas).
type fakeCluster struct {
	f        *fsm.FSM
	mu       sync.Mutex
	idx      uint64
	addr     string
	ctx      context.Context
	wg       sync.WaitGroup
	others   []Member    // more replicas, as gossip would list them (under mu)
	noLeader atomic.Bool // the cluster lost its quorum: not Ready
	// beforeApply, if set, runs first in Apply; an error it returns is Apply's.
	beforeApply atomic.Pointer[func(context.Context, fsm.Command) error]
}

func (c *fakeCluster) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if h := c.beforeApply.Load(); h != nil {
		if err := (*h)(ctx, cmd); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd.Time = time.Now().UTC()
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	c.idx++
	return c.f.Apply(c.idx, data), nil
}

// advance applies n no-op entries (a replica catching up).
func (c *fakeCluster) advance(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		c.idx++
		c.f.AdvanceIndex(c.idx)
	}
}

func (c *fakeCluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Member{{Name: "cp-1", Instance: "i1", XDSAddr: c.addr, Alive: true}}, c.others...)
}

// setOthers sets the other replicas gossip lists.
func (c *fakeCluster) setOthers(ms ...Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.others = ms
}
func (c *fakeCluster) Name() string               { return "cp-1" }
func (c *fakeCluster) Instance() string           { return "i1" }
func (c *fakeCluster) Ready() (bool, string)      { return !c.noLeader.Load(), "" }
func (c *fakeCluster) ServeLocal() (bool, string) { return c.Ready() }
func (c *fakeCluster) RunWhileLeader(_ string, fn func(context.Context)) {
	c.wg.Add(1)
	go func() { defer c.wg.Done(); fn(c.ctx) }()
}

type harness struct {
	t   *testing.T
	fc  *fakeCluster
	srv *Server
	cc  *grpc.ClientConn
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeCluster{f: f, addr: l.Addr().String(), ctx: ctx}
	if _, err := fc.Apply(ctx, fsm.Command{Type: fsm.CmdEnsureDefaultMesh}); err != nil {
		t.Fatal(err)
	}
	opts.State, opts.Cluster = f, fc
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.InsightFlush == 0 {
		opts.InsightFlush = 40 * time.Millisecond
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		fc.wg.Wait()
	})
	return &harness{t: t, fc: fc, srv: srv, cc: cc}
}

func (h *harness) put(doc string) *resource.Resource {
	h.t.Helper()
	r, err := resource.Decode([]byte(doc), resource.JSON)
	if err != nil {
		h.t.Fatal(err)
	}
	resource.Default(r)
	res, err := h.fc.Apply(context.Background(), fsm.Command{Type: fsm.CmdPut, Put: &fsm.PutCommand{Resource: r}})
	if err != nil || res.Err != nil {
		h.t.Fatalf("put: %v %v", err, res.Err)
	}
	return res.Resource
}

func dpDoc(name, addr, svc string, outbound ...string) string {
	var outs []string
	for i, o := range outbound {
		outs = append(outs, `{"port":`+itoa(10001+i)+`,"tags":{"kuma.io/service":"`+o+`"}}`)
	}
	return `{"type":"Dataplane","mesh":"default","name":"` + name + `","networking":{"address":"` + addr +
		`","inbound":[{"port":8080,"servicePort":80,"tags":{"kuma.io/service":"` + svc + `"}}],"outbound":[` + strings.Join(outs, ",") + `]}}`
}

func itoa(i int) string { return strconv.Itoa(i) }

// sotw is a minimal ADS client: one stream, manual requests.
type sotw struct {
	t      *testing.T
	s      discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *core.Node
	cancel context.CancelFunc
	in     chan recvd // one reader goroutine feeds it until the stream ends
}

func (h *harness) sotw(nodeID, doc string) *sotw {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := discovery.NewAggregatedDiscoveryServiceClient(h.cc).StreamAggregatedResources(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	node := &core.Node{Id: nodeID}
	if doc != "" {
		node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{MetadataDataplane: structpb.NewStringValue(doc)}}
	}
	c := &sotw{t: h.t, s: s, node: node, cancel: cancel, in: make(chan recvd, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := s.Recv()
			c.in <- recvd{r, err}
			if err != nil {
				return
			}
		}
	}()
	h.t.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *sotw) send(typeURL, version, nonce string, names []string, nack string) {
	c.t.Helper()
	req := &discovery.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce, ResourceNames: names}
	if nack != "" {
		req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: nack}
	}
	if err := c.s.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

type recvd struct {
	resp *discovery.DiscoveryResponse
	err  error
}

// recv waits for one response (or the stream's error) for up to d.
func (c *sotw) recv(d time.Duration) (*discovery.DiscoveryResponse, error) {
	select {
	case r := <-c.in:
		return r.resp, r.err
	case <-time.After(d):
		return nil, context.DeadlineExceeded
	}
}

func (c *sotw) mustRecv(typeURL string) *discovery.DiscoveryResponse {
	c.t.Helper()
	r, err := c.recv(10 * time.Second)
	if err != nil {
		c.t.Fatalf("recv %s: %v", shortType(typeURL), err)
	}
	if r.GetTypeUrl() != typeURL {
		c.t.Fatalf("got %s, want %s", r.GetTypeUrl(), typeURL)
	}
	return r
}

func names(t *testing.T, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		var m interface {
			proto.Message
			GetName() string
			ValidateAll() error
		}
		switch a.GetTypeUrl() {
		case typeLDS:
			m = &listenerv3.Listener{}
		case typeCDS:
			m = &clusterv3.Cluster{}
		case typeEDS:
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := a.UnmarshalTo(cla); err != nil {
				t.Fatal(err)
			}
			if err := cla.ValidateAll(); err != nil {
				t.Fatalf("invalid CLA %s: %v", cla.GetClusterName(), err)
			}
			out = append(out, cla.GetClusterName())
			continue
		}
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		if err := m.ValidateAll(); err != nil {
			t.Fatalf("invalid %s: %v", m.GetName(), err)
		}
		out = append(out, m.GetName())
	}
	return out
}

func endpointsOf(t *testing.T, r *discovery.DiscoveryResponse, cluster string) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		if cla.GetClusterName() != cluster {
			continue
		}
		for _, le := range cla.GetEndpoints() {
			for _, e := range le.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, sa.GetAddress()+":"+itoa(int(sa.GetPortValue())))
			}
		}
	}
	return out
}

func TestRegisterAndServeSotW(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("backend-1", "10.0.0.2", "backend"))
	c := h.sotw("default.web-1", dpDoc("web-1", "10.0.0.1", "web", "backend"))

	c.send(typeLDS, "", "", nil, "")
	lds := c.mustRecv(typeLDS)
	got := names(t, lds)
	if !slicesEqual(got, []string{"inbound:10.0.0.1:8080", "outbound:127.0.0.1:10001"}) {
		t.Fatalf("listeners = %v", got)
	}
	dp, ok := h.fc.f.Get(resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "web-1"})
	if !ok || dp.Labels[fsm.LabelRegisteredBy] != fsm.RegisteredByProxy {
		t.Fatalf("registered dataplane: %v %v", ok, dp)
	}
	if versionIndex(lds.GetVersionInfo()) != dp.Version {
		t.Fatalf("LDS version %s does not derive from the state (dataplane version %d)", lds.GetVersionInfo(), dp.Version)
	}
	c.send(typeCDS, "", "", nil, "")
	cds := c.mustRecv(typeCDS)
	if got := names(t, cds); !contains(got, "backend") {
		t.Fatalf("clusters = %v", got)
	}
	c.send(typeLDS, lds.GetVersionInfo(), lds.GetNonce(), nil, "")
	c.send(typeCDS, cds.GetVersionInfo(), cds.GetNonce(), nil, "")
	c.send(typeEDS, "", "", []string{"backend"}, "")
	eds := c.mustRecv(typeEDS)
	if got := endpointsOf(t, eds, "backend"); !slicesEqual(got, []string{"10.0.0.2:8080"}) {
		t.Fatalf("backend endpoints = %v", got)
	}
	c.send(typeEDS, eds.GetVersionInfo(), eds.GetNonce(), []string{"backend"}, "")

	// A new backend is pushed without polling.
	h.put(dpDoc("backend-2", "10.0.0.3", "backend"))
	eds2 := c.mustRecv(typeEDS)
	if got := endpointsOf(t, eds2, "backend"); !slicesEqual(got, []string{"10.0.0.2:8080", "10.0.0.3:8080"}) {
		t.Fatalf("backend endpoints after the push = %v", got)
	}
	if versionIndex(eds2.GetVersionInfo()) <= versionIndex(eds.GetVersionInfo()) {
		t.Fatalf("EDS version went from %s to %s", eds.GetVersionInfo(), eds2.GetVersionInfo())
	}
	// A NACK is recorded and later pushes still arrive.
	c.send(typeEDS, eds.GetVersionInfo(), eds2.GetNonce(), []string{"backend"}, "test: rejected")
	h.put(dpDoc("backend-3", "10.0.0.4", "backend"))
	eds3 := c.mustRecv(typeEDS)
	if len(endpointsOf(t, eds3, "backend")) != 3 {
		t.Fatalf("push after a NACK: %v", endpointsOf(t, eds3, "backend"))
	}
	waitFor(t, "NACK in the insight", func() bool {
		ins, ok := h.fc.f.Get(resource.Key{Type: resource.TypeDataplaneInsight, Mesh: "default", Name: "web-1"})
		if !ok {
			return false
		}
		sub := ins.Spec.(*resource.DataplaneInsightSpec).Latest()
		return sub.Status.LastNACKError == "test: rejected" && sub.Status.Total.ResponsesRejected == 1 && sub.Online() &&
			sub.ControlPlaneInstanceID == "cp-1"
	})

	// The stream ends: the insight says offline.
	c.cancel()
	waitFor(t, "offline insight", func() bool {
		ins, ok := h.fc.f.Get(resource.Key{Type: resource.TypeDataplaneInsight, Mesh: "default", Name: "web-1"})
		if !ok {
			return false
		}
		_, online := ins.Spec.(*resource.DataplaneInsightSpec).Online()
		return !online
	})
}

func TestUnknownAndInvalidProxies(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.sotw("default.nobody", "")
	c.send(typeLDS, "", "", nil, "")
	if _, err := c.recv(10 * time.Second); grpcstatus.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "nobody") {
		t.Fatalf("unknown proxy: %v", err)
	}
	bad := strings.Replace(dpDoc("web-2", "10.0.0.1", "web"), `"port":8080`, `"port":0`, 1)
	c = h.sotw("default.web-2", bad)
	c.send(typeLDS, "", "", nil, "")
	if _, err := c.recv(10 * time.Second); grpcstatus.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "networking.inbound[0].port") {
		t.Fatalf("invalid dataplane: %v", err)
	}
	c = h.sotw("default.web-3", dpDoc("other-name", "10.0.0.1", "web"))
	c.send(typeLDS, "", "", nil, "")
	if _, err := c.recv(10 * time.Second); grpcstatus.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "name") {
		t.Fatalf("name mismatch: %v", err)
	}
	c = h.sotw("nodots", "")
	c.send(typeLDS, "", "", nil, "")
	if _, err := c.recv(10 * time.Second); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad node id: %v", err)
	}
	if _, ok := h.fc.f.Get(resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "web-2"}); ok {
		t.Fatal("invalid dataplane stored")
	}
}

// TestHeldUntilCaughtUp: a proxy that already has a newer version than
// this replica applied gets nothing until the replica catches up.
func TestHeldUntilCaughtUp(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("web-1", "10.0.0.1", "web"))
	c := h.sotw("default.web-1", "")
	ahead := h.fc.f.AppliedIndex() + 50
	c.send(typeLDS, formatVersion(ahead, 1), "", nil, "")
	if r, err := c.recv(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a lagging replica answered: %v %v", r, err)
	}
	h.fc.advance(50)
	lds := c.mustRecv(typeLDS)
	if len(names(t, lds)) != 1 {
		t.Fatalf("listeners: %v", names(t, lds))
	}
}

// TestSameConfigAfterReconnect: a new stream that sends the version it has
// gets nothing (it is current), and a fresh one gets byte-identical config.
func TestSameConfigAfterReconnect(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
	c := h.sotw("default.web-1", "")
	c.send(typeCDS, "", "", nil, "")
	first := c.mustRecv(typeCDS)
	c.cancel()

	c2 := h.sotw("default.web-1", "")
	c2.send(typeCDS, first.GetVersionInfo(), "", nil, "")
	if r, err := c2.recv(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("current proxy got a response: %v %v", r, err)
	}
	c3 := h.sotw("default.web-1", "")
	c3.send(typeCDS, "", "", nil, "")
	again := c3.mustRecv(typeCDS)
	if again.GetVersionInfo() != first.GetVersionInfo() || len(again.GetResources()) != len(first.GetResources()) {
		t.Fatalf("versions %s vs %s", again.GetVersionInfo(), first.GetVersionInfo())
	}
	for i := range first.GetResources() {
		if !proto.Equal(first.GetResources()[i], again.GetResources()[i]) {
			t.Fatalf("resource %d differs", i)
		}
	}
}

func TestDelta(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("backend-1", "10.0.0.2", "backend"))
	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := discovery.NewAggregatedDiscoveryServiceClient(h.cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "default.web-1"}
	if err := s.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: typeEDS, ResourceNamesSubscribe: []string{"backend"}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "backend" {
		t.Fatalf("delta EDS: %v", r)
	}
	v1 := r.GetResources()[0].GetVersion()
	if err := s.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: typeEDS, ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	h.put(dpDoc("backend-2", "10.0.0.3", "backend"))
	r, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetResources()) != 1 || versionIndex(r.GetResources()[0].GetVersion()) <= versionIndex(v1) {
		t.Fatalf("delta push: %v", r)
	}
}

func TestShedSendsHint(t *testing.T) {
	h := newHarness(t, Options{RebalanceRate: -1})
	h.put(dpDoc("web-1", "10.0.0.1", "web"))
	c := h.sotw("default.web-1", "")
	c.send(typeLDS, "", "", nil, "")
	c.mustRecv(typeLDS)
	if !h.srv.shedOne("127.0.0.1:9999") {
		t.Fatal("nothing to shed")
	}
	_, err := c.recv(10 * time.Second)
	if ShedHint(err) != "127.0.0.1:9999" {
		t.Fatalf("shed stream ended with %v", err)
	}
}

// TestNoShedWithoutLeader: a replica over its share sheds, unless the
// cluster lost its quorum: then it keeps every proxy it serves.
func TestNoShedWithoutLeader(t *testing.T) {
	h := newHarness(t, Options{RebalanceRate: -1})
	h.fc.setOthers(Member{Name: "cp-2", XDSAddr: "127.0.0.1:2", Alive: true}, Member{Name: "cp-3", XDSAddr: "127.0.0.1:3", Alive: true})
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		h.put(dpDoc(name, "10.0.0.1", "web"))
		c := h.sotw("default."+name, "")
		c.send(typeLDS, "", "", nil, "")
		c.mustRecv(typeLDS)
	}
	if n, hint := h.srv.excess(); n == 0 || hint == "" {
		t.Fatalf("3 proxies here, none elsewhere: excess %d %q, want some", n, hint)
	}
	h.fc.noLeader.Store(true)
	if n, _ := h.srv.excess(); n != 0 {
		t.Fatalf("without a leader: excess %d, want 0", n)
	}
}

// TestListReplicas: the replica-discovery method lists every replica with
// an xDS address and says which are healthy (this one: Ready).
func TestListReplicas(t *testing.T) {
	h := newHarness(t, Options{RebalanceRate: -1})
	h.fc.setOthers(Member{Name: "cp-2", XDSAddr: "127.0.0.1:2", Alive: true},
		Member{Name: "cp-3", XDSAddr: "127.0.0.1:3", Alive: false}, Member{Name: "cp-4"})
	list := func() map[string]bool {
		var out structpb.Struct
		if err := h.cc.Invoke(context.Background(), ReplicasMethod, &emptypb.Empty{}, &out); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, v := range out.GetFields()["replicas"].GetListValue().GetValues() {
			f := v.GetStructValue().GetFields()
			got[f["xdsAddress"].GetStringValue()] = f["healthy"].GetBoolValue()
		}
		return got
	}
	want := map[string]bool{h.fc.addr: true, "127.0.0.1:2": true, "127.0.0.1:3": false}
	if got := list(); !maps.Equal(got, want) {
		t.Fatalf("replicas %v, want %v", got, want)
	}
	h.fc.noLeader.Store(true)
	if got := list(); got[h.fc.addr] {
		t.Fatalf("this replica is not Ready but listed healthy: %v", got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestNoResendAfterNACKOfEmptyResponse: an empty response that the proxy
// rejects is not sent again and again.
func TestNoResendAfterNACKOfEmptyResponse(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("web-1", "10.0.0.1", "web"))
	c := h.sotw("default.web-1", "")
	c.send(typeEDS, "", "", []string{"unknown"}, "")
	r := c.mustRecv(typeEDS)
	if len(r.GetResources()) != 0 {
		t.Fatalf("resources for an unknown cluster: %v", r.GetResources())
	}
	c.send(typeEDS, "", r.GetNonce(), []string{"unknown"}, "test: rejected")
	if again, err := c.recv(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the rejected empty response came again: %v %v", again, err)
	}
}
