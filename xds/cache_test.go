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
