package envoy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"go.uber.org/goleak"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
	xdsenvoy "github.com/kuma-ha/kuma-ha/xds/envoy"
)

// TestMain runs the fake Envoy when the test binary is started as one (see
// fakeenvoy_test.go), and the tests otherwise.
func TestMain(m *testing.M) {
	if slices.Contains(os.Args[1:], fakeEnvoyFlag) {
		os.Exit(fakeEnvoyMain(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// logRecord is one record a test logger received.
type logRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// logCapture is a slog.Handler that keeps every record (and writes it to
// t.Log), so that tests can wait for a state change to be logged.
type logCapture struct {
	t     testing.TB
	attrs []slog.Attr
	mu    *sync.Mutex
	recs  *[]logRecord
}

func newLogCapture(t testing.TB) (*slog.Logger, *logCapture) {
	c := &logCapture{t: t, mu: &sync.Mutex{}, recs: &[]logRecord{}}
	return slog.New(c), c
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	add := func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
		return true
	}
	for _, a := range c.attrs {
		add(a)
	}
	r.Attrs(add)
	c.mu.Lock()
	*c.recs = append(*c.recs, rec)
	c.mu.Unlock()
	c.t.Log(b.String())
	return nil
}

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	n := *c
	n.attrs = append(slices.Clone(c.attrs), as...)
	return &n
}

func (c *logCapture) WithGroup(string) slog.Handler { return c }

// records returns the records so far that match.
func (c *logCapture) records(match func(logRecord) bool) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range *c.recs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// index is the position of the first record that matches, -1 if none.
func (c *logCapture) index(match func(logRecord) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range *c.recs {
		if match(r) {
			return i
		}
	}
	return -1
}

// waitLog waits for a record that matches.
func (c *logCapture) waitLog(t testing.TB, what string, match func(logRecord) bool) logRecord {
	t.Helper()
	var got logRecord
	waitFor(t, "log: "+what, func() bool {
		rs := c.records(match)
		if len(rs) > 0 {
			got = rs[0]
		}
		return len(rs) > 0
	})
	return got
}

func msgHas(s string) func(logRecord) bool {
	return func(r logRecord) bool { return strings.Contains(r.Msg, s) }
}

// waitFor polls cond until it holds or 20s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// --- configs generated the way the control plane does ---

func decode(t testing.TB, doc string) *resource.Resource {
	t.Helper()
	r, err := resource.Decode([]byte(doc), resource.YAML)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	resource.Default(r)
	if verrs := resource.Validate(r); len(verrs) > 0 {
		t.Fatalf("invalid fixture: %v\n%s", verrs, doc)
	}
	return r
}

const meshDefault = "type: Mesh\nname: default\n"

// generate builds proxy's config as a replica would, with the load
// assignments of its EDS clusters from the Dataplanes in others.
func generate(t testing.TB, dp string, others ...string) proxy.Config {
	t.Helper()
	var dps []*resource.Resource
	for _, o := range others {
		dps = append(dps, decode(t, o))
	}
	p, err := xdsenvoy.Generate(xdsenvoy.Input{Mesh: decode(t, meshDefault), Proxy: decode(t, dp)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.Config{Listeners: map[string]*listenerv3.Listener{}, Clusters: map[string]*clusterv3.Cluster{}, Endpoints: map[string]*endpointv3.ClusterLoadAssignment{}}
	for _, l := range p.Listeners {
		cfg.Listeners[l.GetName()] = l
	}
	for _, c := range p.Clusters {
		cfg.Clusters[c.GetName()] = c
	}
	for _, ref := range p.Endpoints {
		cfg.Endpoints[ref.Cluster] = xdsenvoy.LoadAssignment(ref, dps)
	}
	return cfg
}

// Dataplanes of the tests.
const (
	webDP = `type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 18080
    servicePort: 18081
    tags: {kuma.io/service: web}
  outbound:
  - port: 10001
    tags: {kuma.io/service: backend}
  - port: 10002
    tags: {kuma.io/service: db}`

	backend1 = `type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
  - port: 8080
    tags: {kuma.io/service: backend}`

	backend2 = `type: Dataplane
mesh: default
name: backend-2
networking:
  address: 10.0.0.3
  inbound:
  - port: 8080
    tags: {kuma.io/service: backend}`
)
