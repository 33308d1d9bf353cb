package workload

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// forwarder stands in for a caller proxy: every connection it accepts is
// joined to a new connection to the upstream. mangle, when set, changes the
// bytes on their way back; blackhole accepts and never answers.
type forwarder struct {
	ln        net.Listener
	upstream  string
	mangle    bool
	blackhole bool

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startForwarder(t *testing.T, upstream string, configure func(*forwarder)) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, upstream: upstream}
	if configure != nil {
		configure(f)
	}
	f.wg.Go(f.runAccept)
	t.Cleanup(f.close)
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

func (f *forwarder) track(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = append(f.conns, c)
}

func (f *forwarder) runAccept() {
	for {
		down, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.track(down)
		if f.blackhole {
			continue // held open until close
		}
		up, err := net.Dial("tcp", f.upstream)
		if err != nil {
			down.Close()
			continue
		}
		f.track(up)
		f.wg.Go(func() {
			_, _ = io.Copy(up, down)
			up.Close()
		})
		f.wg.Go(func() {
			var dst io.Writer = down
			if f.mangle {
				dst = upperWriter{down}
			}
			_, _ = io.Copy(dst, up)
			down.Close()
		})
	}
}

func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

type upperWriter struct{ w io.Writer }

func (u upperWriter) Write(p []byte) (int, error) {
	return u.w.Write([]byte(strings.ToUpper(string(p))))
}

// verifyNoLeaks checks, after every other cleanup of t, that t left no
// goroutine behind.
func verifyNoLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func runTraffic(t *testing.T, callers []Caller, opts ProxyOptions, max int) []check.ProxyRequest {
	t.Helper()
	opts.MaxRequests = max
	w := NewProxyTraffic(callers, opts)
	env := Env{Recorder: history.NewRecorder(), Seed: 3}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Run(ctx, env); err != nil {
		t.Fatal(err)
	}
	reqs := w.Requests()
	if len(reqs) != max {
		t.Fatalf("recorded %d requests, want %d (the bound)", len(reqs), max)
	}
	total, failed := w.Counts()
	n := 0
	for _, r := range reqs {
		if r.Complete < r.Invoke || r.Invoke < 0 {
			t.Errorf("times out of order: %+v", r)
		}
		if !r.OK {
			n++
		}
	}
	if total != len(reqs) || failed != n {
		t.Errorf("Counts() = %d, %d; want %d, %d", total, failed, len(reqs), n)
	}
	return reqs
}

func TestProxyTrafficThroughForwarder(t *testing.T) {
	verifyNoLeaks(t)
	echo, err := StartEchoServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	a := startForwarder(t, echo.Addr(), nil)
	b := startForwarder(t, echo.Addr(), nil)
	callers := []Caller{{Name: "caller-1", Addr: a.addr()}, {Name: "caller-2", Addr: b.addr()}}
	reqs := runTraffic(t, callers, ProxyOptions{Interval: time.Millisecond, Timeout: 2 * time.Second}, 40)
	per := map[string]int{}
	for _, r := range reqs {
		if !r.OK {
			t.Errorf("request through a working path failed: %+v", r)
		}
		per[r.Proxy]++
	}
	if per["caller-1"] == 0 || per["caller-2"] == 0 {
		t.Errorf("requests per caller: %v", per)
	}
	if echo.Served() != len(reqs) {
		t.Errorf("echo server saw %d connections, want one per request (%d)", echo.Served(), len(reqs))
	}
	if v := check.ProxyTraffic(reqs, nil); v.Result != check.Pass {
		t.Errorf("checker: %s", v)
	}
}

func TestProxyTrafficBrokenPaths(t *testing.T) {
	verifyNoLeaks(t)
	echo, err := StartEchoServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	// A port nothing listens on: taken and released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	// An upstream that is gone: the forwarder accepts, then drops.
	dead := startForwarder(t, refused, nil)
	tests := []struct {
		name    string
		addr    string
		wantErr []string // one of these
	}{
		{"no listener", refused, []string{"connect"}},
		// The forwarder closes at once: the write may or may not see it.
		{"upstream gone", dead.addr(), []string{"read echo", "write to"}},
		{"mangled echo", startForwarder(t, echo.Addr(), func(f *forwarder) { f.mangle = true }).addr(), []string{"differs"}},
		{"no answer", startForwarder(t, echo.Addr(), func(f *forwarder) { f.blackhole = true }).addr(), []string{"timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs := runTraffic(t, []Caller{{Name: "caller-1", Addr: tt.addr}}, ProxyOptions{Interval: time.Millisecond, Timeout: 200 * time.Millisecond}, 3)
			for _, r := range reqs {
				if r.OK || !slices.ContainsFunc(tt.wantErr, func(e string) bool { return strings.Contains(r.Err, e) }) {
					t.Errorf("want a failure mentioning one of %q, got %+v", tt.wantErr, r)
				}
			}
			if v := check.ProxyTraffic(reqs, nil); v.Result != check.Fail {
				t.Errorf("checker passed a broken path: %s", v)
			}
			// The same failures during a fault that touches the data plane are excused.
			dp := []history.Fault{{Nemesis: "partition-halves", DataPlane: true, Start: 0, End: reqs[len(reqs)-1].Complete}}
			if v := check.ProxyTraffic(reqs, dp); v.Result != check.Pass {
				t.Errorf("checker judged requests inside a data plane fault: %s", v)
			}
		})
	}
}

// TestProxyTrafficStopsWithContext: the senders end when ctx does, and the
// request in flight is still recorded.
func TestProxyTrafficStopsWithContext(t *testing.T) {
	verifyNoLeaks(t)
	echo, err := StartEchoServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	f := startForwarder(t, echo.Addr(), nil)
	w := NewProxyTraffic([]Caller{{Name: "caller-1", Addr: f.addr()}}, ProxyOptions{Interval: 5 * time.Millisecond})
	env := Env{Recorder: history.NewRecorder(), Seed: 1}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, env) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, _ := w.Counts(); n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no traffic within 10s")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	n, failed := w.Counts()
	if failed != 0 {
		t.Errorf("%d of %d requests failed on a working path", failed, n)
	}
	if err := w.Run(context.Background(), Env{}); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Run without a recorder: %v", err)
	}
}
