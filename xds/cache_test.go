package xds

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// TestRegenerationDoesNotBlockStreams: while a refresh is paused in the
// middle of regenerating a proxy (after reading the state, before
// installing), a new proxy's stream opens and gets its config, and a watch
// of the paused proxy is answered; the paused result is installed after.
func TestRegenerationDoesNotBlockStreams(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("backend-1", "10.0.0.2", "backend"))
	h.put(dpDoc("web-1", "10.0.0.1", "web"))
	a := h.sotw("default.web-1", "")
	a.send(typeLDS, "", "", nil, "")
	lds := a.mustRecv(typeLDS)

	slow := resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "web-1"}
	entered, release := make(chan struct{}), make(chan struct{})
	hook := func(k resource.Key) {
		if k == slow {
			select {
			case <-entered: // already paused once
			default:
				close(entered)
				<-release
			}
		}
	}
	h.srv.Cache().genHook.Store(&hook)
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})

	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend")) // web-1's config changes
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh never regenerated web-1")
	}

	// The refresh is paused: a new proxy still connects and is served.
	b := h.sotw("default.web-2", dpDoc("web-2", "10.0.0.3", "web", "backend"))
	b.send(typeCDS, "", "", nil, "")
	if got := names(t, b.mustRecv(typeCDS)); !contains(got, "backend") {
		t.Fatalf("web-2 clusters: %v", got)
	}
	// And the paused proxy's own new watch is answered from what it has.
	a.send(typeCDS, "", "", nil, "")
	a.mustRecv(typeCDS)

	close(release)
	released = true
	a.send(typeLDS, lds.GetVersionInfo(), lds.GetNonce(), nil, "")
	if got := names(t, a.mustRecv(typeLDS)); len(got) != 2 {
		t.Fatalf("web-1 listeners after the refresh: %v", got)
	}
}

// recordHandler keeps the records of a logger (safe for concurrent use).
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// warnings returns the "warnings" attribute of every record carrying one.
func (h *recordHandler) warnings() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out [][]string
	for _, r := range h.records {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "warnings" {
				w, _ := a.Value.Any().([]string)
				out = append(out, w)
			}
			return true
		})
	}
	return out
}

// TestGeneratorWarningsLoggedOncePerChange: what the generator leaves out of
// a proxy's config is logged when it changes, not on every regeneration or
// push.
func TestGeneratorWarningsLoggedOncePerChange(t *testing.T) {
	rec := &recordHandler{}
	h := newHarness(t, Options{Logger: slog.New(rec)})
	// An outbound named like web-1's local cluster cannot be generated.
	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend", "localhost:80"))
	c := h.sotw("default.web-1", "")
	c.send(typeLDS, "", "", nil, "")
	lds := c.mustRecv(typeLDS)
	want := []string{`networking.outbound[1]: destination cluster "localhost:80" has the name of a local cluster; no listener`}
	if got := rec.warnings(); len(got) != 1 || !slices.Equal(got[0], want) {
		t.Fatalf("logged warnings %q, want once %q", got, want)
	}

	// A change of the config with the same warnings: pushed, not logged again.
	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend", "localhost:80", "db"))
	c.send(typeLDS, lds.GetVersionInfo(), lds.GetNonce(), nil, "")
	lds = c.mustRecv(typeLDS)
	if got := names(t, lds); len(got) != 3 {
		t.Fatalf("listeners %v", got)
	}
	if got := rec.warnings(); len(got) != 1 {
		t.Fatalf("same warnings logged again: %q", got)
	}

	// Other warnings: logged.
	h.put(dpDoc("web-1", "10.0.0.1", "web", "localhost:80", "db"))
	c.send(typeLDS, lds.GetVersionInfo(), lds.GetNonce(), nil, "")
	lds = c.mustRecv(typeLDS)
	want = []string{`networking.outbound[0]: destination cluster "localhost:80" has the name of a local cluster; no listener`}
	if got := rec.warnings(); len(got) != 2 || !slices.Equal(got[1], want) {
		t.Fatalf("logged warnings %q, want then %q", got, want)
	}

	// None left: nothing more to say.
	h.put(dpDoc("web-1", "10.0.0.1", "web", "db"))
	c.send(typeLDS, lds.GetVersionInfo(), lds.GetNonce(), nil, "")
	c.mustRecv(typeLDS)
	if got := rec.warnings(); len(got) != 2 {
		t.Fatalf("logged warnings %q, want no more", got)
	}
}

// TestInterning: two proxies of one service with the same outbound share
// their cluster set and their outbound listener (the same bytes, held once);
// what they held is forgotten once both have left.
func TestInterning(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("backend-1", "10.0.0.9", "backend"))
	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend"))
	h.put(dpDoc("web-2", "10.0.0.2", "web", "backend"))
	a, b := h.sotw("default.web-1", ""), h.sotw("default.web-2", "")
	for _, c := range []*sotw{a, b} {
		c.send(typeCDS, "", "", nil, "")
		c.mustRecv(typeCDS)
	}
	c := h.srv.Cache()
	key := func(name string) resource.Key {
		return resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: name}
	}
	c.mu.Lock()
	p1, p2 := c.proxies[key("web-1")], c.proxies[key("web-2")]
	sharedCDS := p1.cds.setBody == p2.cds.setBody
	sharedOut := p1.lds.res["outbound:127.0.0.1:10001"] == p2.lds.res["outbound:127.0.0.1:10001"]
	ownIn := p1.lds.res["inbound:10.0.0.1:8080"] != nil && p2.lds.res["inbound:10.0.0.2:8080"] != nil
	differentLDS := p1.lds.version != p2.lds.version
	c.mu.Unlock()
	if !sharedCDS || !sharedOut || !ownIn || !differentLDS {
		t.Fatalf("shared clusters %v, shared outbound listener %v, own inbound listeners %v, different listener versions %v",
			sharedCDS, sharedOut, ownIn, differentLDS)
	}
	// web-1 changes (its old config is released, its new one held).
	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend", "other"))
	waitFor(t, "web-1's new clusters", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.proxies[key("web-1")].cds.names) == 3
	})
	a.cancel()
	b.cancel()
	waitFor(t, "both proxies to leave", func() bool { return c.Proxies() == 0 })
	c.mu.Lock()
	res, sets := len(c.interns.res), len(c.interns.sets)
	c.mu.Unlock()
	if res != 0 || sets != 0 {
		t.Fatalf("after every proxy left: %d interned resources, %d interned sets", res, sets)
	}
}

// TestEDSSendsWhatChanged: a state-of-the-world EDS response carries only
// the load assignments the proxy does not have yet (EDS, unlike LDS and CDS,
// is not state of the world); a new stream, or the answer after a NACK,
// carries every one asked for.
func TestEDSSendsWhatChanged(t *testing.T) {
	h := newHarness(t, Options{})
	h.put(dpDoc("backend-1", "10.0.0.8", "backend"))
	h.put(dpDoc("db-1", "10.0.0.9", "db"))
	h.put(dpDoc("web-1", "10.0.0.1", "web", "backend", "db"))
	eds := []string{"backend", "db"}
	a := h.sotw("default.web-1", "")
	a.send(typeEDS, "", "", eds, "")
	r := a.mustRecv(typeEDS)
	if got := names(t, r); !slicesEqual(got, eds) {
		t.Fatalf("first EDS response: %v, want %v", got, eds)
	}
	a.send(typeEDS, r.GetVersionInfo(), r.GetNonce(), eds, "")

	h.put(dpDoc("backend-2", "10.0.0.10", "backend"))
	r2 := a.mustRecv(typeEDS)
	if got := names(t, r2); !slicesEqual(got, []string{"backend"}) {
		t.Fatalf("after a backend change: %v, want [backend]", got)
	}
	if r2.GetVersionInfo() == r.GetVersionInfo() {
		t.Fatal("the EDS version did not change")
	}
	// A NACK, then a change: everything again.
	a.send(typeEDS, r.GetVersionInfo(), r2.GetNonce(), eds, "rejected")
	h.put(dpDoc("db-2", "10.0.0.11", "db"))
	r3 := a.mustRecv(typeEDS)
	if got := names(t, r3); !slicesEqual(got, eds) {
		t.Fatalf("after a NACK and a change: %v, want %v", got, eds)
	}
	// A new stream with an older version gets everything.
	b := h.sotw("default.web-1", "")
	b.send(typeEDS, r2.GetVersionInfo(), "", eds, "")
	if got := names(t, b.mustRecv(typeEDS)); !slicesEqual(got, eds) {
		t.Fatalf("new stream: %v, want %v", got, eds)
	}
}

// TestNextReportDue: a stream's next counters-only report is due between
// one and one and a quarter InsightFlush later, so reports spread out.
func TestNextReportDue(t *testing.T) {
	s := &Server{opts: Options{InsightFlush: 10 * time.Second}}
	now := time.Now()
	seen := map[time.Time]bool{}
	for range 100 {
		d := s.nextReportDue(now)
		if d.Before(now.Add(10*time.Second)) || d.After(now.Add(12500*time.Millisecond)) {
			t.Fatalf("due %s after now, want within [10s, 12.5s]", d.Sub(now))
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct due times in 100: not spread", len(seen))
	}
}
