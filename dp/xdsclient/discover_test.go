package xdsclient

import (
	"context"
	"slices"
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
