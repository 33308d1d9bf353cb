package xdsclient

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/xds"
)

func TestReplicasMethodMatchesServer(t *testing.T) {
	if replicasMethod != xds.ReplicasMethod {
		t.Fatalf("replicasMethod %q, server's %q", replicasMethod, xds.ReplicasMethod)
	}
}

// TestDiscoverFromXDS: a client given one replica learns the others from
// its xDS port and fails over to them when that one goes away.
func TestDiscoverFromXDS(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.put(dpDoc("web-1", "10.0.0.1", "web"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := DiscoverFromXDS(func() []string { return []string{"127.0.0.1:1", tc.replicas[1].addr} })(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := tc.addrs()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("discovered %v, want %v", got, want)
	}
	if _, err := DiscoverFromXDS(func() []string { return []string{"127.0.0.1:1"} })(ctx); err == nil {
		t.Fatal("no replica answers: want an error")
	}

	var c *Client
	c = newClient(t, Config{NodeID: "default.web-1", Servers: []string{tc.replicas[0].addr},
		Discover: DiscoverFromXDS(func() []string { return c.Status().Servers })})
	runClient(t, c)
	waitFor(t, "every replica known", func() bool { return len(c.Status().Servers) == 3 })
	waitFor(t, "connected to the given replica", func() bool { return c.Status().Server == tc.replicas[0].addr })
	tc.replicas[0].stop()
	waitFor(t, "connected to a discovered replica", func() bool {
		st := c.Status()
		return st.Connected && st.Server != tc.replicas[0].addr
	})
}

// TestFailuresCountUnreachable: with every replica gone, Failures reaches
// the number of known replicas, and the config stays.
func TestFailuresCountUnreachable(t *testing.T) {
	tc := newTestCluster(t, 2)
	tc.put(dpDoc("web-1", "10.0.0.1", "web"))
	c := newClient(t, Config{NodeID: "default.web-1", Servers: tc.addrs(), MaxBackoff: 100 * time.Millisecond})
	runClient(t, c)
	waitFor(t, "config", func() bool { return c.Snapshot().Complete() })
	if st := c.Status(); st.Failures != 0 {
		t.Fatalf("Failures %d while connected", st.Failures)
	}
	snap := c.Snapshot()
	for _, r := range tc.replicas {
		r.stop()
	}
	waitFor(t, "every replica failed", func() bool {
		st := c.Status()
		return !st.Connected && st.Failures >= len(st.Servers)
	})
	if c.Snapshot() != snap {
		t.Fatal("the config changed although no replica answered")
	}
}

// TestPickAvoidsFailed: round robin passes over a replica that just failed
// while another has not, and falls back to plain round robin when all did.
func TestPickAvoidsFailed(t *testing.T) {
	c, err := New(Config{NodeID: "default.web-1", Servers: []string{"a:1", "b:1", "c:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.pick("a:1", ""); got != "b:1" {
		t.Fatalf("after a: %s, want b", got)
	}
	c.mu.failedAt["b:1"] = time.Now()
	if got := c.pick("a:1", ""); got != "c:1" {
		t.Fatalf("b failed: %s, want c", got)
	}
	c.mu.failedAt["c:1"] = time.Now()
	c.mu.failedAt["a:1"] = time.Now()
	if got := c.pick("a:1", ""); got != "b:1" {
		t.Fatalf("all failed: %s, want b (round robin)", got)
	}
	if got := c.pick("a:1", "c:1"); got != "c:1" {
		t.Fatalf("hint: %s, want c", got)
	}
	c.mu.failedAt["b:1"] = time.Now().Add(-2 * avoidFor)
	if got := c.pick("c:1", ""); got != "b:1" {
		t.Fatalf("b failed long ago: %s, want b", got)
	}
}

// freezer forwards TCP to a target and can stop passing bytes while
// keeping every connection open, as a paused (SIGSTOP) replica does.
type freezer struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	thawCh chan struct{} // nil while flowing; closed to thaw
	wg     sync.WaitGroup
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{l: l, target: target}
	f.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, u)
			f.mu.Unlock()
			f.wg.Go(func() { f.pipe(u, c) })
			f.wg.Go(func() { f.pipe(c, u) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		f.thaw()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			ch := f.thawCh
			f.mu.Unlock()
			if ch != nil {
				<-ch
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawCh == nil {
		f.thawCh = make(chan struct{})
	}
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawCh != nil {
		close(f.thawCh)
		f.thawCh = nil
	}
}

// TestProbeLeavesSilentReplica: a replica that keeps its connection open
// but stops answering (paused) is left after the probes go unanswered.
func TestProbeLeavesSilentReplica(t *testing.T) {
	tc := newTestCluster(t, 2)
	tc.put(dpDoc("web-1", "10.0.0.1", "web"))
	fz := newFreezer(t, tc.replicas[0].addr)
	c := newClient(t, Config{NodeID: "default.web-1", Servers: []string{fz.l.Addr().String(), tc.replicas[1].addr},
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond})
	runClient(t, c)
	waitFor(t, "connected through the freezer", func() bool {
		st := c.Status()
		return st.Connected && st.Server == fz.l.Addr().String() && c.Snapshot().Complete()
	})
	fz.freeze()
	frozenAt := time.Now()
	waitFor(t, "moved to the other replica", func() bool {
		st := c.Status()
		return st.Connected && st.Server == tc.replicas[1].addr
	})
	t.Logf("left the silent replica after %s", time.Since(frozenAt))
	if err := c.Status().LastError; err == nil || !strings.Contains(err.Error(), "stopped answering") {
		t.Fatalf("last error %v, want the probe's", err)
	}
}
