package main

// kuma-bench xds: the xDS load tool. It simulates N proxies (ADS clients that
// validate and ACK like Envoy) spread round robin over the replicas of a
// cluster, changes the state through the REST API, and measures propagation:
// from the moment the write is acknowledged to the moment each proxy has the
// change in its config. It also reads every replica's RSS and CPU time from
// its /metrics.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

const (
	xdsTargetService  = "backend"
	xdsStreamsPerConn = 50
	xdsConvergeWait   = 60 * time.Second
	xdsStaticBackends = 20
)

// xdsLevel is the result for one proxy count.
type xdsLevel struct {
	Proxies   int
	Changes   int
	Samples   []time.Duration // one per (proxy, change)
	Converged []time.Duration // per change: until the last proxy had it
	Missing   int             // (proxy, change) pairs that never converged
	Retries   int             // change writes answered 503 and retried
	Commit    []time.Duration // per change: the write's own latency (sent -> answered)
	FromAck   []time.Duration // one per (proxy, change): from the write's answer (0 if the proxy had it first)
	Setup     time.Duration   // create Dataplanes + connect + initial config
	Replicas  []replicaUsage
}

type replicaUsage struct {
	Name       string
	RSSBytes   float64
	CPUSeconds float64 // during the measured changes
	Proxies    float64 // kuma_xds_proxies
}

// simProxy is one simulated proxy.
type simProxy struct {
	name    string
	mu      sync.Mutex
	eps     map[string]bool // endpoints of the target service's load assignment
	initial chan struct{}   // closed once it has listeners, clusters and endpoints
	once    sync.Once
}

// xdsWatch tracks one awaited endpoint across all proxies.
type xdsWatch struct {
	mu       sync.Mutex
	addr     string
	start    time.Time
	seen     map[*simProxy]time.Time
	want     int
	complete chan struct{}
}

type xdsRun struct {
	proxies []*simProxy
	// parsed memoizes load assignments by their bytes: thousands of proxies
	// receive byte-identical ones, and the simulator must not be the
	// bottleneck (each distinct payload is still unmarshalled and validated).
	parsed  sync.Map // string(bytes) -> *parsedCLA
	watch   atomic.Pointer[xdsWatch]
	acks    atomic.Int64
	invalid atomic.Int64
}

type parsedCLA struct {
	name string
	eps  map[string]bool
	ok   bool
}

// parseCLA unmarshals and validates a ClusterLoadAssignment (once per
// distinct payload) and returns its name and endpoint addresses. The map is
// shared: do not modify it.
func (r *xdsRun) parseCLA(b []byte) (string, map[string]bool, bool) {
	if v, ok := r.parsed.Load(string(b)); ok {
		p := v.(*parsedCLA)
		return p.name, p.eps, p.ok
	}
	p := &parsedCLA{eps: map[string]bool{}}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(b, cla); err == nil && cla.ValidateAll() == nil {
		p.ok, p.name = true, cla.GetClusterName()
		for _, le := range cla.GetEndpoints() {
			for _, e := range le.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				p.eps[sa.GetAddress()+":"+strconv.FormatUint(uint64(sa.GetPortValue()), 10)] = true
			}
		}
	}
	r.parsed.Store(string(b), p)
	return p.name, p.eps, p.ok
}

func (r *xdsRun) observe(p *simProxy, now time.Time) {
	w := r.watch.Load()
	if w == nil {
		return
	}
	p.mu.Lock()
	has := p.eps[w.addr]
	p.mu.Unlock()
	if !has {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, done := w.seen[p]; done {
		return
	}
	w.seen[p] = now
	if len(w.seen) == w.want {
		close(w.complete)
	}
}

// runProxy keeps one ADS stream on cc until ctx ends.
func (r *xdsRun) runProxy(ctx context.Context, cc *grpc.ClientConn, p *simProxy) error {
	s, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &core.Node{Id: "default." + p.name}
	send := func(req *discovery.DiscoveryRequest) error { req.Node = node; return s.Send(req) }
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
		if err := send(&discovery.DiscoveryRequest{TypeUrl: typ}); err != nil {
			return err
		}
	}
	var edsNames []string
	got := map[string]bool{}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		ack := &discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		var newEDS []string
		for _, a := range resp.GetResources() {
			switch typ {
			case resourcev3.ListenerType:
				l := &listenerv3.Listener{}
				if err := a.UnmarshalTo(l); err != nil || l.ValidateAll() != nil {
					r.invalid.Add(1)
				}
			case resourcev3.ClusterType:
				c := &clusterv3.Cluster{}
				if err := a.UnmarshalTo(c); err != nil || c.ValidateAll() != nil {
					r.invalid.Add(1)
					continue
				}
				if c.GetType() == clusterv3.Cluster_EDS {
					newEDS = append(newEDS, c.GetName())
				}
			case resourcev3.EndpointType:
				name, eps, ok := r.parseCLA(a.GetValue())
				if !ok {
					r.invalid.Add(1)
					continue
				}
				if name != xdsTargetService {
					continue
				}
				p.mu.Lock()
				p.eps = eps
				p.mu.Unlock()
			}
		}
		if typ == resourcev3.EndpointType {
			ack.ResourceNames = edsNames
		}
		if err := send(ack); err != nil {
			return err
		}
		r.acks.Add(1)
		got[typ] = true
		if typ == resourcev3.ClusterType {
			slices.Sort(newEDS)
			if !slices.Equal(newEDS, edsNames) {
				edsNames = newEDS
				if err := send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: edsNames}); err != nil {
					return err
				}
			}
		}
		if typ == resourcev3.EndpointType {
			r.observe(p, time.Now())
		}
		if got[resourcev3.ListenerType] && got[resourcev3.ClusterType] && got[resourcev3.EndpointType] {
			p.once.Do(func() { close(p.initial) })
		}
	}
}

func xdsProxyDoc(i int) (string, []byte) {
	name := fmt.Sprintf("load-%05d", i)
	return name, []byte(fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":"10.%d.%d.%d",`+
		`"inbound":[{"port":8080,"tags":{"kuma.io/service":"web-%d"}}],`+
		`"outbound":[{"port":10001,"tags":{"kuma.io/service":%q}},{"port":10002,"tags":{"kuma.io/service":"web-%d"}}]}}`,
		name, 10+i/65536, i/256%256, i%256, i%50, xdsTargetService, (i+1)%50))
}

// xdsBackendDoc is backend k (k < xdsStaticBackends: the fixed ones) or, for
// the changes, "backend-moving" at a new address each time, so the load
// assignment keeps its size however many changes run.
func xdsBackendDoc(k int) (string, string, []byte) {
	name := fmt.Sprintf("backend-%04d", k)
	if k >= xdsStaticBackends {
		name = "backend-moving"
	}
	addr := fmt.Sprintf("10.250.%d.%d", k/256%256, k%256)
	return name, addr + ":8080", []byte(fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":%q,`+
		`"inbound":[{"port":8080,"tags":{"kuma.io/service":%q}}]}}`, name, addr, xdsTargetService))
}

// benchXDSLevel runs one proxy count against the cluster behind apiURLs/xdsAddrs.
func benchXDSLevel(ctx context.Context, cfg *config, client *http.Client, apiURLs, xdsAddrs []string, n, changes int) (*xdsLevel, error) {
	res := &xdsLevel{Proxies: n, Changes: changes}
	setupStart := time.Now()
	for k := range xdsStaticBackends {
		name, _, doc := xdsBackendDoc(k)
		if err := doWrite(ctx, client, http.MethodPut, apiURLs[0]+"/meshes/default/dataplanes/"+name, doc, 200, 201); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
	}
	if err := parallel(ctx, n, 32, func(i int) error {
		name, doc := xdsProxyDoc(i)
		return doWrite(ctx, client, http.MethodPut, apiURLs[i%len(apiURLs)]+"/meshes/default/dataplanes/"+name, doc, 200, 201)
	}); err != nil {
		return nil, fmt.Errorf("create Dataplanes: %w", err)
	}

	run := &xdsRun{}
	pctx, stopProxies := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var conns []*grpc.ClientConn
	defer func() {
		stopProxies()
		wg.Wait()
		for _, cc := range conns {
			_ = cc.Close()
		}
	}()
	var streamErrs atomic.Int64
	// Proxy i goes to replica i mod R; each replica's proxies share
	// connections, xdsStreamsPerConn streams each.
	perReplica := make([]int, len(xdsAddrs))
	connOf := make([]*grpc.ClientConn, len(xdsAddrs))
	for i := range n {
		r := i % len(xdsAddrs)
		if perReplica[r]%xdsStreamsPerConn == 0 {
			cc, err := grpc.NewClient(xdsAddrs[r], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			conns = append(conns, cc)
			connOf[r] = cc
		}
		perReplica[r]++
		name, _ := xdsProxyDoc(i)
		p := &simProxy{name: name, initial: make(chan struct{})}
		run.proxies = append(run.proxies, p)
		cc := connOf[r]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run.runProxy(pctx, cc, p); err != nil && pctx.Err() == nil {
				streamErrs.Add(1)
				cfg.log.Warn("proxy stream ended", "proxy", p.name, "err", err)
			}
		}()
	}
	initCtx, cancelInit := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelInit()
	for _, p := range run.proxies {
		select {
		case <-p.initial:
		case <-initCtx.Done():
			return nil, fmt.Errorf("proxies did not all get their initial config within 3m (stream errors: %d)", streamErrs.Load())
		}
	}
	res.Setup = time.Since(setupStart)
	cfg.log.Info("xds: proxies connected", "proxies", n, "setup", res.Setup.Round(time.Millisecond))

	before, err := scrapeAll(ctx, client, apiURLs)
	if err != nil {
		return nil, err
	}
	for k := xdsStaticBackends; k < xdsStaticBackends+changes; k++ {
		name, addr, doc := xdsBackendDoc(k)
		w := &xdsWatch{addr: addr, seen: map[*simProxy]time.Time{}, want: n, complete: make(chan struct{})}
		run.watch.Store(w)
		var sent time.Time
		for attempt := 1; ; attempt++ {
			sent = time.Now()
			err := doWrite(ctx, client, http.MethodPut, apiURLs[k%len(apiURLs)]+"/meshes/default/dataplanes/"+name, doc, 200, 201)
			if err == nil {
				break
			}
			// A leader election on the saturated machine answers 503; the
			// write is retried and measured from its successful attempt.
			if attempt == 5 || !strings.Contains(err.Error(), "503") {
				return nil, fmt.Errorf("change %d: %w", k, err)
			}
			res.Retries++
			cfg.log.Warn("change write retried", "change", k, "err", err)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			}
		}
		w.start = sent
		acked := time.Now()
		res.Commit = append(res.Commit, acked.Sub(sent))
		select {
		case <-w.complete:
		case <-time.After(xdsConvergeWait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		w.mu.Lock()
		var last time.Duration
		for _, at := range w.seen {
			d := at.Sub(sent)
			res.FromAck = append(res.FromAck, max(0, at.Sub(acked)))
			res.Samples = append(res.Samples, d)
			last = max(last, d)
		}
		res.Missing += n - len(w.seen)
		w.mu.Unlock()
		res.Converged = append(res.Converged, last)
		run.watch.Store(nil)
	}
	after, err := scrapeAll(ctx, client, apiURLs)
	if err != nil {
		return nil, err
	}
	for i := range after {
		after[i].CPUSeconds -= before[i].CPUSeconds
	}
	res.Replicas = after
	if bad := run.invalid.Load(); bad > 0 {
		return nil, fmt.Errorf("%d resources failed ValidateAll", bad)
	}
	slices.Sort(res.Samples)
	return res, nil
}

// parallel runs f(0..n-1) with at most c at a time; the first error stops it.
func parallel(ctx context.Context, n, c int, f func(i int) error) error {
	var (
		next    atomic.Int64
		firstMu sync.Mutex
		first   error
		wg      sync.WaitGroup
	)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func scrapeAll(ctx context.Context, client *http.Client, apiURLs []string) ([]replicaUsage, error) {
	var out []replicaUsage
	for _, u := range apiURLs {
		m, err := scrapeMetrics(ctx, client, u)
		if err != nil {
			return nil, err
		}
		out = append(out, replicaUsage{Name: u, RSSBytes: m["process_resident_memory_bytes"],
			CPUSeconds: m["process_cpu_seconds_total"], Proxies: m["kuma_xds_proxies"]})
	}
	return out, nil
}

// scrapeMetrics reads the unlabelled samples of a Prometheus text page.
func scrapeMetrics(ctx context.Context, client *http.Client, apiURL string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", apiURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("scrape %s: status %d", apiURL, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// benchXDS starts a fresh 3-replica cluster per proxy count (or uses
// --api), runs the level and reports.
func benchXDS(ctx context.Context, cfg *config) (string, error) {
	m := probeMachine(ctx, cfg)
	at := time.Now()
	client := &http.Client{Transport: testcluster.NewTransport(64), Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var levels []*xdsLevel
	for _, n := range cfg.xdsProxies {
		lvl, err := func() (*xdsLevel, error) {
			if len(cfg.apiURLs) > 0 {
				xdsAddrs, err := discoverXDS(ctx, client, cfg.apiURLs)
				if err != nil {
					return nil, err
				}
				return benchXDSLevel(ctx, cfg, client, cfg.apiURLs, xdsAddrs, n, cfg.xdsChanges)
			}
			dir, cleanup, err := cfg.tempDir("xds")
			if err != nil {
				return nil, err
			}
			defer cleanup()
			c, err := testcluster.Start(ctx, testcluster.Options{N: 3, BinDir: cfg.binDir, BaseDir: dir, Logf: cfg.logf,
				StartTogether: true, ExtraArgs: []string{"--xds-rebalance-rate", "0"}})
			defer c.Close()
			if err != nil {
				dumpUnlessInterrupted(ctx, c.DumpLogs)
				return nil, err
			}
			if err := waitFormed(ctx, c); err != nil {
				dumpUnlessInterrupted(ctx, c.DumpLogs)
				return nil, err
			}
			var apis, xdss []string
			for _, r := range c.Replicas() {
				apis = append(apis, r.APIURL())
				xdss = append(xdss, r.XDSAddr)
			}
			lvl, err := benchXDSLevel(ctx, cfg, client, apis, xdss, n, cfg.xdsChanges)
			if err != nil {
				dumpUnlessInterrupted(ctx, c.DumpLogs)
				return nil, err
			}
			for i, r := range c.Replicas() {
				lvl.Replicas[i].Name = r.Name
			}
			return lvl, nil
		}()
		if err != nil {
			return "", fmt.Errorf("%d proxies: %w", n, err)
		}
		cfg.log.Info("xds level done", "proxies", n, "p50", percentile(lvl.Samples, 50), "p99", percentile(lvl.Samples, 99),
			"max", percentile(lvl.Samples, 100), "missing", lvl.Missing)
		levels = append(levels, lvl)
	}
	return xdsReport(cfg, m, at, levels), nil
}

// discoverXDS reads every replica's xDS address from /cluster.
func discoverXDS(ctx context.Context, client *http.Client, apiURLs []string) ([]string, error) {
	for _, u := range apiURLs {
		var st struct {
			Replicas []struct {
				XDSAddress string `json:"xdsAddress"`
			} `json:"replicas"`
		}
		if err := getJSON(ctx, client, u+"/cluster", &st); err != nil {
			continue
		}
		var out []string
		for _, r := range st.Replicas {
			if r.XDSAddress != "" {
				out = append(out, r.XDSAddress)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, errors.New("--api: no replica answered /cluster with xDS addresses")
}

func xdsReport(cfg *config, m machine, at time.Time, levels []*xdsLevel) string {
	var b strings.Builder
	b.WriteString("## " + sectionTitle("xds") + "\n\n")
	b.WriteString(provenance(cfg.cmdline, at, m, cfg.quick))
	fmt.Fprintf(&b, "\nEach level: a fresh 3-replica cluster; N proxies (SotW ADS clients that validate every resource with ValidateAll and ACK; a load assignment byte-identical to one already validated is not validated again, so that the simulator is not the bottleneck) spread round robin over the replicas, %d streams per gRPC connection; each proxy has an outbound to `%s`, which has %d Dataplanes. %d changes, one at a time: one more `%s` Dataplane (always the same one, at a new address) is PUT through the API (round robin over the replicas); propagation is measured to the moment each proxy has the new endpoint in its load assignment, *after ack* from the API's answer (0 when the proxy had the change before the answer arrived) and *after send* from the moment the write was sent (which includes the write's own commit, \"write p50\"). RSS and kuma_xds_proxies are read from each replica's /metrics after the changes; CPU is the time each replica used during the changes.\n\n",
		xdsStreamsPerConn, xdsTargetService, xdsStaticBackends, cfg.xdsChanges, xdsTargetService)
	var rows [][]string
	for _, l := range levels {
		slices.Sort(l.FromAck)
		var rss, cpu, held []string
		for _, r := range l.Replicas {
			rss = append(rss, fmt.Sprintf("%.0f", r.RSSBytes/(1<<20)))
			cpu = append(cpu, fmt.Sprintf("%.2f", r.CPUSeconds))
			held = append(held, fmt.Sprintf("%.0f", r.Proxies))
		}
		slices.Sort(l.Commit)
		rows = append(rows, []string{fmt.Sprint(l.Proxies), fmt.Sprint(l.Changes), fmtDur(percentile(l.Commit, 50)),
			fmtDur(percentile(l.FromAck, 50)), fmtDur(percentile(l.FromAck, 99)), fmtDur(percentile(l.FromAck, 100)),
			fmtDur(percentile(l.Samples, 50)), fmtDur(percentile(l.Samples, 99)), fmtDur(percentile(l.Samples, 100)),
			fmt.Sprint(l.Missing), strings.Join(held, " / "), strings.Join(rss, " / "), strings.Join(cpu, " / "),
			l.Setup.Round(100 * time.Millisecond).String()})
	}
	b.WriteString(table([]string{"proxies", "changes", "write p50", "after ack p50", "after ack p99", "after ack max", "after send p50", "after send p99", "after send max", "not converged", "proxies per replica",
		"RSS MiB per replica", "CPU s per replica", "setup"}, rows))
	for _, l := range levels {
		if l.Retries > 0 {
			fmt.Fprintf(&b, "\n%d proxies: %d change writes were answered 503 (a leader election on the saturated machine) and retried; those changes are measured from the successful attempt.\n", l.Proxies, l.Retries)
		}
	}
	b.WriteString("\nFor reference (issue 3): Kuma 2.9, single replica with the memory store, measured on this same 2-core machine with the same method: p50 0.49 s at 60 proxies, 1.08 s at 500, 4.0 s (max 4.7 s, 800 MB RSS) at 2,000.\n")
	return b.String()
}

func getJSON(ctx context.Context, client *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
