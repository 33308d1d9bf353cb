package xds

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// TestShutdownAndServeRace: Shutdown before Serve, or concurrently with it,
// is safe (run with -race) and Serve then returns nil.
func TestShutdownAndServeRace(t *testing.T) {
	for i := range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		f := fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fc := &fakeCluster{f: f, addr: l.Addr().String(), ctx: ctx}
		srv, err := New(Options{State: f, Cluster: fc, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			srv.Shutdown(ctx) // before Serve
		}
		var wg sync.WaitGroup
		wg.Add(2)
		errc := make(chan error, 1)
		go func() { defer wg.Done(); errc <- srv.Serve(ctx, l) }()
		go func() { defer wg.Done(); srv.Shutdown(ctx) }()
		wg.Wait()
		if err := <-errc; err != nil {
			t.Fatalf("run %d: Serve: %v", i, err)
		}
		cancel()
		fc.wg.Wait()
	}
}

// TestRegistrationEndsWithItsStream: the write that registers a proxy's
// Dataplane uses the stream's context, so a proxy that leaves cancels it.
func TestRegistrationEndsWithItsStream(t *testing.T) {
	h := newHarness(t, Options{})
	entered := make(chan struct{})
	ended := make(chan error, 1)
	hook := func(ctx context.Context, cmd fsm.Command) error {
		if cmd.Type != fsm.CmdPut || cmd.Put.Resource.Name != "web-1" {
			return nil
		}
		close(entered)
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	}
	h.fc.beforeApply.Store(&hook)
	c := h.sotw("default.web-1", dpDoc("web-1", "10.0.0.1", "web"))
	c.send(typeLDS, "", "", nil, "")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the registration was never written")
	}
	c.cancel() // the proxy leaves
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the registration ended with %v, want the stream's cancellation", err)
		}
	case <-time.After(registerTimeout / 2):
		t.Fatal("the registration outlived its stream")
	}
	if _, ok := h.fc.f.Get(resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "web-1"}); ok {
		t.Fatal("the Dataplane of a proxy that left was written")
	}
}
