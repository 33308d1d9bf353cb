package xds

import (
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
