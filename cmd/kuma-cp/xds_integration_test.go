package main

// xDS from every replica, end to end: three built kuma-cp processes and
// Envoy-like ADS clients (proxy_test.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	tc "github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

const (
	testCleanupGrace = 4 * time.Second
)

func webDoc(name, addr string) string {
	return fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":%q,`+
		`"inbound":[{"port":8080,"servicePort":80,"tags":{"kuma.io/service":"web"}}],`+
		`"outbound":[{"port":10001,"tags":{"kuma.io/service":"backend"}}]}}`, name, addr)
}

func xdsAddrs(c *tc.Cluster) []string {
	var out []string
	for _, r := range c.Replicas() {
		out = append(out, r.XDSAddr)
	}
	return out
}

type overview struct {
	Items []struct {
		Name             string `json:"name"`
		DataplaneInsight struct {
			Subscriptions []struct {
				ControlPlaneInstanceID string  `json:"controlPlaneInstanceId"`
				DisconnectTime         *string `json:"disconnectTime"`
				Status                 struct {
					LastNackError string `json:"lastNackError"`
					Total         struct {
						ResponsesRejected int `json:"responsesRejected"`
					} `json:"total"`
				} `json:"status"`
			} `json:"subscriptions"`
		} `json:"dataplaneInsight"`
	} `json:"items"`
}

// connected returns, per proxy name, the replica it is online on ("" if offline).
func connected(t *testing.T, ctx context.Context, r *tc.Replica) map[string]string {
	t.Helper()
	m, _ := insightState(t, ctx, r)
	return m
}

// insightState returns connected() and the number of open subscriptions
// recorded per replica (a proxy's old stream counts until it is closed).
func insightState(t *testing.T, ctx context.Context, r *tc.Replica) (map[string]string, map[string]int) {
	t.Helper()
	status, _, body := get(t, ctx, r.APIURL()+"/meshes/default/dataplanes+insights?size=1000")
	if status != http.StatusOK {
		t.Fatalf("dataplanes+insights: %d %s", status, body)
	}
	var ov overview
	if err := json.Unmarshal(body, &ov); err != nil {
		t.Fatal(err)
	}
	out, open := map[string]string{}, map[string]int{}
	for _, it := range ov.Items {
		out[it.Name] = ""
		for _, s := range it.DataplaneInsight.Subscriptions {
			if s.DisconnectTime == nil {
				out[it.Name] = s.ControlPlaneInstanceID
				open[s.ControlPlaneInstanceID]++
			}
		}
	}
	return out, open
}

func TestIntegrationXDS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three kuma-cp processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	c, err := tc.Start(ctx, tc.Options{N: 3, BinDir: binDir(t), BaseDir: t.TempDir(), Logf: t.Logf,
		ExtraArgs: []string{"--dataplane-cleanup-grace", testCleanupGrace.String(), "--insight-flush-interval", "200ms",
			"--dead-replica-grace", "2s",
			"--xds-rebalance-rate", "0"}}) // this test moves proxies itself; TestIntegrationRebalance covers rebalancing
	t.Cleanup(func() {
		if t.Failed() && c != nil {
			c.DumpLogs(30000)
		}
		if c != nil {
			_ = c.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	rs := c.Replicas()
	addrs := xdsAddrs(c)
	put := func(r *tc.Replica, path string, doc []byte) {
		t.Helper()
		if status, _, body := do(t, ctx, http.MethodPut, r.APIURL()+path, doc, nil); status != http.StatusCreated && status != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", path, status, body)
		}
	}
	put(rs[0], "/meshes/default/dataplanes/backend-1", dataplaneDoc("backend-1", "10.1.0.1", 8080))

	// One self-registering proxy per replica.
	var proxies []*testProxy
	for i := range 3 {
		name := fmt.Sprintf("web-%d", i+1)
		proxies = append(proxies, newTestProxy(t, "default."+name, webDoc(name, fmt.Sprintf("10.0.0.%d", i+1)), addrs, i))
	}
	hasBackends := func(want ...string) func(proxyConfig) bool {
		return func(c proxyConfig) bool { return slices.Equal(c.endpoints("backend"), want) }
	}
	for _, p := range proxies {
		p.waitConfig("initial config", 20*time.Second, hasBackends("10.1.0.1:8080"))
	}

	t.Run("identical config on every replica", func(t *testing.T) {
		cfgs := []proxyConfig{}
		for _, p := range proxies {
			cfgs = append(cfgs, p.config())
		}
		for i, cfg := range cfgs {
			if cfg.server != addrs[i] {
				t.Fatalf("proxy %d is on %s, want %s", i, cfg.server, addrs[i])
			}
			if cfg.versions[resourcev3.EndpointType] != cfgs[0].versions[resourcev3.EndpointType] ||
				string(cfg.raw[resourcev3.EndpointType]["backend"]) != string(cfgs[0].raw[resourcev3.EndpointType]["backend"]) {
				t.Fatalf("the backend load assignment differs between replicas 1 and %d", i+1)
			}
			if _, ok := cfg.raw[resourcev3.ListenerType][fmt.Sprintf("inbound:10.0.0.%d:8080", i+1)]; !ok {
				t.Fatalf("proxy %d listeners: %v", i, cfg.raw[resourcev3.ListenerType])
			}
		}
		// The same proxy's twin on another replica gets byte-identical config.
		twin := newTestProxy(t, "default.web-1", "", addrs, 2)
		got := twin.waitConfig("twin config", 20*time.Second, hasBackends("10.1.0.1:8080"))
		want := proxies[0].config()
		for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType} {
			if got.versions[typ] != want.versions[typ] {
				t.Fatalf("%s version on replica 3 %s, on replica 1 %s", typ, got.versions[typ], want.versions[typ])
			}
			for name, b := range want.raw[typ] {
				if string(got.raw[typ][name]) != string(b) {
					t.Fatalf("%s %s differs between replicas", typ, name)
				}
			}
		}
		twin.stop()
	})

	t.Run("backend changes reach every replica's proxies", func(t *testing.T) {
		put(rs[1], "/meshes/default/dataplanes/backend-2", dataplaneDoc("backend-2", "10.1.0.2", 8080))
		for _, p := range proxies {
			p.waitConfig("new backend", 10*time.Second, hasBackends("10.1.0.1:8080", "10.1.0.2:8080"))
		}
		if status, _, body := do(t, ctx, http.MethodDelete, rs[2].APIURL()+"/meshes/default/dataplanes/backend-2", nil, nil); status != http.StatusOK {
			t.Fatalf("DELETE: %d %s", status, body)
		}
		for _, p := range proxies {
			p.waitConfig("deleted backend gone", 10*time.Second, hasBackends("10.1.0.1:8080"))
		}
	})

	t.Run("traffic route split", func(t *testing.T) {
		put(rs[2], "/meshes/default/traffic-routes/split", []byte(`{"type":"TrafficRoute","mesh":"default","name":"split",
			"sources":[{"match":{"kuma.io/service":"*"}}],"destinations":[{"match":{"kuma.io/service":"backend"}}],
			"conf":{"split":[{"weight":80,"destination":{"kuma.io/service":"backend"}},{"weight":20,"destination":{"kuma.io/service":"backend-canary"}}]}}`))
		for _, p := range proxies {
			p.waitConfig("weighted clusters", 10*time.Second, func(c proxyConfig) bool {
				tcp := c.tcpProxy("outbound:127.0.0.1:10001")
				if tcp == nil || tcp.GetWeightedClusters() == nil {
					return false
				}
				w := map[string]uint32{}
				for _, wc := range tcp.GetWeightedClusters().GetClusters() {
					w[wc.GetName()] = wc.GetWeight()
				}
				return w["backend"] == 80 && w["backend-canary"] == 20
			})
		}
	})

	t.Run("NACK recorded and later pushes continue", func(t *testing.T) {
		p := proxies[1]
		p.rejectNext()
		put(rs[0], "/meshes/default/dataplanes/backend-3", dataplaneDoc("backend-3", "10.1.0.3", 8080))
		eventually(t, "NACK in the insight", 10*time.Second, func() (bool, string) {
			_, _, body := get(t, ctx, rs[0].APIURL()+"/meshes/default/dataplanes/web-2/_overview")
			return strings.Contains(string(body), "rejected on purpose"), string(body)
		})
		put(rs[0], "/meshes/default/dataplanes/backend-4", dataplaneDoc("backend-4", "10.1.0.4", 8080))
		p.waitConfig("push after NACK", 10*time.Second, hasBackends("10.1.0.1:8080", "10.1.0.3:8080", "10.1.0.4:8080"))
	})

	t.Run("moved proxy never goes back in time", func(t *testing.T) {
		p := proxies[0] // on replica 1
		lagging := rs[2]
		if err := lagging.Pause(); err != nil {
			t.Fatal(err)
		}
		put(rs[0], "/meshes/default/dataplanes/backend-5", dataplaneDoc("backend-5", "10.1.0.5", 8080))
		want := p.waitConfig("backend-5", 10*time.Second, hasBackends("10.1.0.1:8080", "10.1.0.3:8080", "10.1.0.4:8080", "10.1.0.5:8080"))
		p.move(2) // connects to the paused replica, which has not seen backend-5
		if err := lagging.Resume(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "web-1 online on the lagging replica", 20*time.Second, func() (bool, string) {
			m := connected(t, ctx, rs[0])
			return p.streamAddr() == addrs[2] && m["web-1"] == lagging.Name, fmt.Sprint(m)
		})
		// It already has this state's config: nothing older, nothing re-sent;
		// the next change comes from the replica it moved to.
		put(rs[1], "/meshes/default/dataplanes/backend-6", dataplaneDoc("backend-6", "10.1.0.6", 8080))
		got := p.waitConfig("a change from the new replica", 20*time.Second, func(c proxyConfig) bool {
			return c.server == addrs[2] && slices.Contains(c.endpoints("backend"), "10.1.0.6:8080")
		})
		if versionIndex(got.versions[resourcev3.EndpointType]) <= versionIndex(want.versions[resourcev3.EndpointType]) {
			t.Fatalf("EDS version went from %s to %s", want.versions[resourcev3.EndpointType], got.versions[resourcev3.EndpointType])
		}
		if b := p.backwards(); len(b) > 0 {
			t.Fatalf("config went back in time: %v", b)
		}
	})

	t.Run("self-registered dataplane survives hops and goes after the grace period", func(t *testing.T) {
		p := proxies[1]
		for _, i := range []int{0, 2, 1} {
			p.move(i)
			eventually(t, "web-2 online on "+rs[i].Name, 20*time.Second, func() (bool, string) {
				m := connected(t, ctx, rs[0])
				return m["web-2"] == rs[i].Name, fmt.Sprintf("%v, stream to %s (replicas %v), streams ended: %v", m, p.streamAddr(), addrs, p.history())
			})
		}
		eventually(t, "web-2 online on cp-2", 10*time.Second, func() (bool, string) {
			m := connected(t, ctx, rs[0])
			return m["web-2"] == rs[1].Name, fmt.Sprint(m)
		})
		time.Sleep(testCleanupGrace) // the proxy stays connected for a whole grace period: nothing may be removed
		if status, _, _ := get(t, ctx, rs[0].APIURL()+"/meshes/default/dataplanes/web-2"); status != http.StatusOK {
			t.Fatalf("web-2 removed while its proxy hopped between replicas: %d", status)
		}
		gone := time.Now()
		p.stop()
		eventually(t, "web-2 removed", testCleanupGrace+15*time.Second, func() (bool, string) {
			status, _, _ := get(t, ctx, rs[2].APIURL()+"/meshes/default/dataplanes/web-2")
			return status == http.StatusNotFound, fmt.Sprint(status)
		})
		if took := time.Since(gone); took < testCleanupGrace {
			t.Fatalf("removed %s after its proxy left, before the %s grace period", took, testCleanupGrace)
		}
		// An API-created Dataplane is never removed that way.
		if status, _, _ := get(t, ctx, rs[0].APIURL()+"/meshes/default/dataplanes/backend-1"); status != http.StatusOK {
			t.Fatal("API-created backend-1 was removed")
		}
	})

	for _, p := range proxies {
		if b := p.backwards(); len(b) > 0 {
			t.Fatalf("%s went back in time: %v", p.nodeID, b)
		}
	}
}

// TestIntegrationRebalance: after a replica restarts, proxies spread back to
// within 10 % of a fair share, a few reconnects a second.
func TestIntegrationRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three kuma-cp processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const rate = 2
	c, err := tc.Start(ctx, tc.Options{N: 3, BinDir: binDir(t), BaseDir: t.TempDir(), Logf: t.Logf,
		ExtraArgs: []string{"--insight-flush-interval", "200ms", "--dead-replica-grace", "2s", "--xds-rebalance-rate", fmt.Sprint(rate)}})
	t.Cleanup(func() {
		if t.Failed() && c != nil {
			c.DumpLogs(30000)
		}
		if c != nil {
			_ = c.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	rs := c.Replicas()
	addrs := xdsAddrs(c)
	const n = 30
	var proxies []*testProxy
	for i := range n {
		name := fmt.Sprintf("web-%02d", i)
		proxies = append(proxies, newTestProxy(t, "default."+name, webDoc(name, fmt.Sprintf("10.0.1.%d", i+1)), addrs, i%3))
	}
	reader := rs[0] // the replica whose API the checks read
	counts := func() map[string]int {
		m := map[string]int{}
		for _, replica := range connected(t, ctx, reader) {
			m[replica]++
		}
		return m
	}
	eventually(t, "all proxies online", 30*time.Second, func() (bool, string) {
		m := counts()
		return m[""] == 0 && m[rs[0].Name]+m[rs[1].Name]+m[rs[2].Name] == n, fmt.Sprint(m)
	})

	// Replica 3 dies: its proxies fail over; it comes back empty.
	if err := rs[2].Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "proxies moved off the dead replica", 30*time.Second, func() (bool, string) {
		m := counts()
		return m[rs[0].Name]+m[rs[1].Name] == n, fmt.Sprint(m)
	})
	// The leader closes the streams the dead replica left recorded.
	eventually(t, "the dead replica's streams marked offline", 30*time.Second, func() (bool, string) {
		_, open := insightState(t, ctx, rs[0])
		return open[rs[2].Name] == 0, fmt.Sprint(open)
	})
	before := 0
	for _, p := range proxies {
		before += p.reconnects()
	}
	if err := rs[2].Restart(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "balanced within 10 % of a fair share", 60*time.Second, func() (bool, string) {
		m := counts()
		for _, r := range rs {
			if m[r.Name] < 9 || m[r.Name] > 11 {
				return false, fmt.Sprint(m)
			}
		}
		return true, ""
	})
	took := time.Since(start)
	after := 0
	for _, p := range proxies {
		after += p.reconnects()
	}
	moves := after - before
	perSecond := float64(moves) / took.Seconds()
	t.Logf("rebalanced in %s with %d reconnects (%.1f/s)", took.Round(100*time.Millisecond), moves, perSecond)
	// Each of the two loaded replicas closes at most `rate` streams a second.
	if moves > 2*int(float64(rate)*took.Seconds())+4 {
		t.Fatalf("%d reconnects in %s: more than %d a second", moves, took, 2*rate)
	}

	// SIGTERM: the replica tells its proxies where to go before it exits.
	shedBefore := 0
	for _, p := range proxies {
		shedBefore += p.shedCount()
	}
	on := counts()[rs[0].Name]
	reader = rs[1]
	if err := rs[0].Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "proxies of the stopped replica online elsewhere", 20*time.Second, func() (bool, string) {
		m := counts()
		return m[rs[1].Name]+m[rs[2].Name] == n, fmt.Sprint(m)
	})
	shedAfter := 0
	for _, p := range proxies {
		shedAfter += p.shedCount()
	}
	if shedAfter-shedBefore < on {
		t.Fatalf("%d proxies were on the stopped replica, only %d were told where to go", on, shedAfter-shedBefore)
	}
}
