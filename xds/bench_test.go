package xds

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// BenchmarkPropagation measures one replica pushing an endpoint change to
// N proxies: each op adds (or removes) a Dataplane of the service every
// proxy calls and waits until every proxy has ACKed a load assignment at
// least that new. The proxies are bare SotW ADS streams over loopback gRPC,
// 50 per connection, that ACK what they get without decoding it, so the
// figures are mostly the server's (profile with -cpuprofile, focus on xds).
// It also reports the Go heap and stacks in use per proxy once connected.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{100, 2000} {
		b.Run(fmt.Sprintf("proxies=%d", n), func(b *testing.B) { benchPropagation(b, n) })
	}
}

func benchPropagation(b *testing.B, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fc := &fakeCluster{f: f, addr: l.Addr().String(), ctx: ctx}
	defer fc.wg.Wait()
	put := func(doc string) uint64 {
		r, err := resource.Decode([]byte(doc), resource.JSON)
		if err != nil {
			b.Fatal(err)
		}
		resource.Default(r)
		res, err := fc.Apply(ctx, fsm.Command{Type: fsm.CmdPut, Put: &fsm.PutCommand{Resource: r}})
		if err == nil {
			err = res.Err
		}
		if err != nil {
			b.Fatal(err)
		}
		return res.Index
	}
	if _, err := fc.Apply(ctx, fsm.Command{Type: fsm.CmdEnsureDefaultMesh}); err != nil {
		b.Fatal(err)
	}
	for k := range 20 {
		put(benchDP(fmt.Sprintf("backend-%d", k), fmt.Sprintf("10.250.0.%d", k), "backend"))
	}
	for i := range n {
		put(benchDP(fmt.Sprintf("web-%d", i), fmt.Sprintf("10.1.%d.%d", i/256, i%256), fmt.Sprintf("svc-%d", i%50),
			"backend", fmt.Sprintf("svc-%d", (i+1)%50)))
	}
	srv, err := New(Options{State: f, Cluster: fc, Logger: slog.New(slog.DiscardHandler), RebalanceRate: -1})
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			b.Error(err)
		}
	}()

	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	p := newBenchProxies(n)
	var conns []*grpc.ClientConn
	defer func() {
		for _, cc := range conns {
			_ = cc.Close()
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	for i := range n {
		if i%50 == 0 {
			cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, cc)
		}
		st, err := discovery.NewAggregatedDiscoveryServiceClient(conns[len(conns)-1]).StreamAggregatedResources(sctx)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { p.run(st, i, []string{"backend", fmt.Sprintf("svc-%d", (i+1)%50)}) })
	}
	// Connected: every proxy has a first load assignment.
	p.await(b, 1)
	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)

	cpu0 := processCPU()
	b.ResetTimer()
	for k := 0; b.Loop(); k++ {
		name := fmt.Sprintf("backend-moving-%d", k/2)
		var idx uint64
		if k%2 == 0 {
			idx = put(benchDP(name, fmt.Sprintf("10.251.%d.%d", k/512%256, k/2%256), "backend"))
		} else {
			res, err := fc.Apply(ctx, fsm.Command{Type: fsm.CmdDelete, Delete: &fsm.DeleteCommand{
				Key: resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: name}}})
			if err != nil || res.Err != nil {
				b.Fatal(err, res.Err)
			}
			idx = res.Index
		}
		p.await(b, idx)
	}
	b.StopTimer()
	// CPU time, unlike wall time, does not depend on what else the machine runs.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(ms1.HeapInuse-ms0.HeapInuse)/float64(n), "heapB/proxy")
	b.ReportMetric(float64(ms1.StackInuse-ms0.StackInuse)/float64(n), "stackB/proxy")
	stopStreams()
}

func benchDP(name, addr, service string, outbound ...string) string {
	out := ""
	for j, s := range outbound {
		if j > 0 {
			out += ","
		}
		out += fmt.Sprintf(`{"port":%d,"tags":{"kuma.io/service":%q}}`, 10001+j, s)
	}
	return fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":%q,`+
		`"inbound":[{"port":8080,"tags":{"kuma.io/service":%q}}],"outbound":[%s]}}`, name, addr, service, out)
}

// benchProxies are the benchmark's proxies: each is counted once per
// target, when its load assignments reach it.
type benchProxies struct {
	target   atomic.Uint64
	last     []atomic.Uint64 // per proxy: the newest EDS version index it ACKed
	credited []atomic.Uint64 // per proxy: the target it was counted for
	left     atomic.Int64
	done     atomic.Pointer[chan struct{}]
}

func newBenchProxies(n int) *benchProxies {
	p := &benchProxies{last: make([]atomic.Uint64, n), credited: make([]atomic.Uint64, n)}
	p.target.Store(math.MaxUint64)
	return p
}

// await returns once every proxy has an EDS version index of at least idx.
func (p *benchProxies) await(b *testing.B, idx uint64) {
	done := make(chan struct{})
	p.done.Store(&done)
	p.left.Store(int64(len(p.last)))
	p.target.Store(idx)
	for i := range p.last {
		p.credit(i, p.last[i].Load())
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d proxies did not get index %d within a minute", p.left.Load(), len(p.last), idx)
	}
}

func (p *benchProxies) credit(i int, idx uint64) {
	t := p.target.Load()
	if idx >= t && p.credited[i].Swap(t) != t && p.left.Add(-1) == 0 {
		close(*p.done.Load())
	}
}

// run is one proxy: LDS, CDS and EDS (backend and one other service), ACKing everything.
func (p *benchProxies) run(st grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse], i int, eds []string) {
	node := &core.Node{Id: fmt.Sprintf("default.web-%d", i)}
	_ = st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typeLDS})
	_ = st.Send(&discovery.DiscoveryRequest{TypeUrl: typeCDS})
	_ = st.Send(&discovery.DiscoveryRequest{TypeUrl: typeEDS, ResourceNames: eds})
	for {
		resp, err := st.Recv()
		if err != nil {
			return
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if resp.GetTypeUrl() == typeEDS {
			ack.ResourceNames = eds
		}
		if err := st.Send(ack); err != nil {
			return
		}
		if resp.GetTypeUrl() == typeEDS {
			idx := versionIndex(resp.GetVersionInfo())
			p.last[i].Store(idx)
			p.credit(i, idx)
		}
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
