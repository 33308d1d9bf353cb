package testcluster

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(envFake) == "1" {
		runFakeKumaCP()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// fakeBinDir returns a dir whose kuma-cp is this test binary.
func fakeBinDir(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "kuma-cp")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFreePorts(t *testing.T) {
	a, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(a, b...) {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(p)))
		if err != nil {
			t.Fatalf("port %d not free for TCP: %v", p, err)
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", itoa(p)))
		if err != nil {
			t.Fatalf("port %d not free for UDP: %v", p, err)
		}
		l.Close()
		u.Close()
	}
	if lo, _, err := ephemeralRange(); err == nil && lo-lowestPort >= 1000 {
		for _, p := range a {
			if p < lowestPort || p >= lo {
				t.Errorf("port %d outside [%d, %d)", p, lowestPort, lo)
			}
		}
	}
	if _, err := FreePorts(-1); err == nil {
		t.Fatal("FreePorts(-1) should fail")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestParseStatusField(t *testing.T) {
	data := []byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nBad:\t12\n")
	tests := []struct {
		field   string
		want    int64
		wantErr bool
	}{
		{"VmRSS", 1024 * 1024, false},
		{"VmHWM", 2048 * 1024, false},
		{"Bad", 0, true},
		{"Missing", 0, true},
	}
	for _, tt := range tests {
		got, err := parseStatusField(data, tt.field)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d, err %v", tt.field, got, err, tt.want, tt.wantErr)
		}
	}
	if rss, err := ProcStatusBytes(0, "VmRSS"); err != nil || rss <= 0 {
		t.Errorf("own VmRSS: %d, %v", rss, err)
	}
}

func TestHTTPHelpers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Content-Type", r.Header.Get("Content-Type"))
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusCreated)
		}
		w.Write([]byte("ok " + r.URL.Path))
	}))
	defer srv.Close()
	defer DefaultClient.HTTP.CloseIdleConnections()
	ctx := context.Background()
	tests := []struct {
		name   string
		do     func() (int, http.Header, []byte, error)
		status int
		method string
		ctype  string
	}{
		{"get", func() (int, http.Header, []byte, error) { return Get(ctx, srv.URL+"/a") }, 200, "GET", ""},
		{"put", func() (int, http.Header, []byte, error) { return Put(ctx, srv.URL+"/a", []byte("{}")) }, 201, "PUT", "application/json"},
		{"delete", func() (int, http.Header, []byte, error) { return Delete(ctx, srv.URL+"/a") }, 200, "DELETE", ""},
	}
	for _, tt := range tests {
		status, h, body, err := tt.do()
		if err != nil || status != tt.status || h.Get("X-Method") != tt.method || h.Get("X-Content-Type") != tt.ctype || string(body) != "ok /a" {
			t.Errorf("%s: got %d %v %q %v", tt.name, status, h, body, err)
		}
	}
	if _, _, _, err := Get(ctx, "http://127.0.0.1:1/"); err == nil {
		t.Error("GET to a closed port should fail")
	}
}

func TestClusterLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Start(ctx, Options{
		N:             3,
		BinDir:        fakeBinDir(t),
		Env:           []string{envFake + "=1"},
		Logf:          t.Logf,
		StartTogether: true,
		StopTimeout:   5 * time.Second,
	})
	defer func() {
		if t.Failed() {
			c.DumpLogs()
		}
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if _, err := os.Stat(c.BaseDir()); !os.IsNotExist(err) {
			t.Errorf("temp base dir %s not removed: %v", c.BaseDir(), err)
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if leader.Name != "cp-1" {
		t.Fatalf("leader %s, want cp-1", leader.Name)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := c.ClusterIDs(ctx)
	if err != nil || len(ids) != 3 || ids["cp-2"] != "fake-cluster" {
		t.Fatalf("cluster ids %v, %v", ids, err)
	}
	if rss, err := leader.RSS(); err != nil || rss <= 0 {
		t.Fatalf("RSS %d, %v", rss, err)
	}

	// Kill the leader: the others agree on cp-2.
	pid := leader.PID()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	if leader.Running() {
		t.Fatal("killed replica still running")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("pid %d still exists", pid)
	}
	l2, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Name != "cp-2" {
		t.Fatalf("leader after kill %s, want cp-2", l2.Name)
	}

	// Restart on the same ports.
	if err := leader.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if leader.PID() == pid {
		t.Fatal("restart kept the pid")
	}
	if err := c.WaitReady(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if l, err := c.WaitLeader(ctx); err != nil || l.Name != "cp-1" {
		t.Fatalf("leader after restart %v, %v", l, err)
	}

	// Pause cp-3: it is left out of WaitLeader; Stop works on a paused process.
	r3 := c.Replica(3)
	if err := r3.Pause(); err != nil {
		t.Fatal(err)
	}
	if !r3.Paused() || len(c.Responsive()) != 2 {
		t.Fatalf("paused %v responsive %d", r3.Paused(), len(c.Responsive()))
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r3.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := r3.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := r3.Stop(); err != nil {
		t.Fatalf("stop paused: %v", err)
	}
	if r3.Running() {
		t.Fatal("stopped replica still running")
	}
	if err := r3.Kill(); err != nil {
		t.Fatalf("kill of a stopped replica: %v", err)
	}
	log, _ := os.ReadFile(r3.LogPath)
	if !strings.Contains(string(log), "SIGTERM") {
		t.Fatalf("stop did not deliver SIGTERM; log:\n%s", log)
	}

	// Add a 4th replica.
	r4, err := c.Add(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, r4); err != nil {
		t.Fatal(err)
	}
}

func TestContextCancelKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Start(ctx, Options{N: 2, BinDir: fakeBinDir(t), Env: []string{envFake + "=1"}, Logf: t.Logf})
	defer c.Close()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()
	for _, r := range c.Replicas() {
		select {
		case <-r.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still running after cancel", r.Name)
		}
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no replicas", Options{N: 0, BinDir: "/nonexistent"}, "Options.N"},
		{"no binary", Options{N: 1, BinDir: t.TempDir()}, "kuma-cp"},
	}
	for _, tt := range tests {
		c, err := Start(ctx, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want it to mention %q", tt.name, err, tt.want)
		}
		if err := c.Close(); err != nil {
			t.Errorf("%s: close: %v", tt.name, err)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "internal", "testcluster")); err != nil {
		t.Fatal(err)
	}
	if _, err := RepoRoot("/"); err == nil {
		t.Fatal("RepoRoot(/) should fail")
	}
}

func TestFailedStartLeavesNothingRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, Options{
		N:      3,
		BinDir: fakeBinDir(t),
		Env:    []string{envFake + "=1"},
		Logf:   t.Logf,
		ReplicaArgs: func(i int) []string {
			if i == 2 {
				return []string{"--no-such-flag"} // the fake exits at once
			}
			return nil
		},
	})
	defer c.Close()
	if err == nil || !strings.Contains(err.Error(), "cp-2 exited") {
		t.Fatalf("err %v, want cp-2 exited", err)
	}
	for _, r := range c.Replicas() {
		if r.Running() {
			t.Errorf("%s still running after a failed start", r.Name)
		}
	}
	if log := c.Replica(2).LogTail(4096); !strings.Contains(log, "no-such-flag") {
		t.Errorf("cp-2 log lacks the reason:\n%s", log)
	}
}
