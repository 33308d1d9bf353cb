package main

// kuma-dp end to end: three built kuma-cp replicas, built kuma-dp proxies
// and real TCP traffic on 127.0.0.1 through them to echo servers.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tc "github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

func binDir(t *testing.T) string {
	t.Helper()
	root, err := tc.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := tc.BuildBinaries(root)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(tc.PollInterval) // polling interval of a condition with a deadline
	}
	t.Fatalf("%s: not within %s (last: %s)", what, within, last)
}

// echoServer is an application: it echoes every connection's bytes and
// counts the connections it got.
type echoServer struct {
	l     net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

// cleaner is the test whose end stops a server or proxy (a subtest may
// start one that outlives it).
type cleaner interface{ Cleanup(func()) }

func startEcho(t *testing.T, owner cleaner, port int) *echoServer {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{l: l}
	e.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			e.conns.Add(1)
			e.wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	owner.Cleanup(func() { l.Close(); e.wg.Wait() })
	return e
}

// request sends one line through addr on a new connection and checks the echo.
func request(addr string, payload string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, payload+"\n"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if line != payload+"\n" {
		return fmt.Errorf("echo %q, want %q", line, payload)
	}
	return nil
}

// traffic sends requests through addr every interval until stopped and
// records every failure.
type traffic struct {
	addr   string
	stopCh chan struct{}
	wg     sync.WaitGroup
	ok     atomic.Int64
	mu     sync.Mutex
	fails  []string
}

func startTraffic(addr string, every time.Duration) *traffic {
	tr := &traffic{addr: addr, stopCh: make(chan struct{})}
	tr.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-tr.stopCh:
				return
			case <-t.C:
			}
			start := time.Now()
			if err := request(addr, fmt.Sprintf("req-%d", i)); err != nil {
				tr.mu.Lock()
				tr.fails = append(tr.fails, fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err))
				tr.mu.Unlock()
				continue
			}
			tr.ok.Add(1)
		}
	})
	return tr
}

// stop ends the traffic and returns the successes and failures.
func (tr *traffic) stop() (int64, []string) {
	close(tr.stopCh)
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok.Load(), tr.fails
}

// dp is one kuma-dp process.
type dp struct {
	*tc.Process
	name     string
	admin    string
	stateDir string
}

func startDP(t *testing.T, owner *testing.T, bin, dir, name string, doc string, servers []string, extra ...string) *dp {
	t.Helper()
	ports, err := tc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	d := &dp{name: name, admin: fmt.Sprintf("127.0.0.1:%d", ports[0]), stateDir: filepath.Join(dir, name+"-state")}
	var cp []string
	for _, s := range servers {
		cp = append(cp, "grpc://"+s)
	}
	args := []string{"run", "--cp-address", strings.Join(cp, ","), "--state-dir", d.stateDir,
		"--admin-addr", d.admin, "--log-level", "debug", "--drain-time", "2s"}
	if doc != "" {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--dataplane-file", path)
	}
	args = append(args, extra...)
	d.Process = &tc.Process{Name: name, Path: filepath.Join(bin, "kuma-dp"), Args: args,
		LogPath: filepath.Join(dir, name+".log"), StopTimeout: 10 * time.Second}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() {
		if owner.Failed() {
			_, _, st, _ := tc.Get(context.Background(), "http://"+d.admin+"/status")
			owner.Logf("--- %s status ---\n%s\n--- %s log ---\n%s", name, st, name, d.LogTail(30000))
		}
		_ = d.Kill()
	})
	return d
}

type dpStatus struct {
	Ready         bool              `json:"ready"`
	Connected     bool              `json:"connected"`
	Replica       string            `json:"replica"`
	Frozen        bool              `json:"frozen"`
	ConfigSource  string            `json:"configSource"`
	ConfigVersion map[string]string `json:"configVersion"`
	Replicas      []string          `json:"replicas"`
	LastError     string            `json:"lastError"`
}

func (d *dp) status(ctx context.Context) (*dpStatus, error) {
	code, _, body, err := tc.Get(ctx, "http://"+d.admin+"/status")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("status %d: %s", code, body)
	}
	var st dpStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// replica is the replica the proxy's stream is on.
func (d *dp) replica(t *testing.T, ctx context.Context, c *tc.Cluster) *tc.Replica {
	t.Helper()
	st, err := d.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range c.Replicas() {
		if r.XDSAddr == st.Replica {
			return r
		}
	}
	t.Fatalf("%s is on %q, not a replica", d.name, st.Replica)
	return nil
}

func (d *dp) config(ctx context.Context) string {
	_, _, body, _ := tc.Get(ctx, "http://"+d.admin+"/config")
	return string(body)
}

func (d *dp) waitReady(t *testing.T, ctx context.Context, within time.Duration) {
	t.Helper()
	eventually(t, d.name+" ready", within, func() (bool, string) {
		code, _, body, err := tc.Get(ctx, "http://"+d.admin+"/ready")
		if err != nil {
			return false, err.Error()
		}
		return code == 200, string(body)
	})
}

func echoDoc(name string, port, appPort int) string {
	return tc.InboundDataplane(name, "echo", port, appPort)
}

func callerDoc(name string, outPort, inPort, appPort int) string {
	return tc.CallerDataplane(name, "caller", inPort, appPort, "echo", outPort)
}

func TestIntegrationDataplane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	T := t // owns what outlives a subtest
	bin := binDir(t)
	dir := t.TempDir()
	c, err := tc.Start(ctx, tc.Options{N: 3, BinDir: bin, BaseDir: filepath.Join(dir, "cp"), Logf: t.Logf, StartTogether: true,
		ExtraArgs: []string{"--dead-replica-grace", "2s"}})
	t.Cleanup(func() {
		if t.Failed() && c != nil {
			c.DumpLogs(20000)
		}
		if c != nil {
			_ = c.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	ports, err := tc.FreePorts(12)
	if err != nil {
		t.Fatal(err)
	}
	echoApp, echoIn := ports[0], ports[1]
	outPort, callerIn, callerApp := ports[2], ports[3], ports[4]
	app1 := startEcho(t, T, echoApp)
	r1, r2 := c.Replica(1), c.Replica(2)

	// The caller is given one replica only: it must learn the others.
	echo1 := startDP(t, T, bin, dir, "echo-1", echoDoc("echo-1", echoIn, echoApp), []string{r2.XDSAddr})
	caller := startDP(t, T, bin, dir, "caller", callerDoc("caller", outPort, callerIn, callerApp), []string{r1.XDSAddr})
	echo1.waitReady(t, ctx, 30*time.Second)
	caller.waitReady(t, ctx, 30*time.Second)
	through := fmt.Sprintf("127.0.0.1:%d", outPort)

	t.Run("traffic flows through both proxies to the app", func(t *testing.T) {
		eventually(t, "a request through the caller's outbound", 10*time.Second, func() (bool, string) {
			if err := request(through, "hello"); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		before := app1.conns.Load()
		for i := range 20 {
			if err := request(through, fmt.Sprintf("m%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if got := app1.conns.Load() - before; got != 20 {
			t.Fatalf("the echo app got %d connections for 20 requests", got)
		}
		eventually(t, "the caller learned every replica", 15*time.Second, func() (bool, string) {
			st, err := caller.status(ctx)
			if err != nil {
				return false, err.Error()
			}
			return len(st.Replicas) == 3 && st.Connected && st.Replica == r1.XDSAddr, fmt.Sprintf("%+v", st)
		})
	})

	t.Run("the replica a proxy uses dies: it moves within 2s and gets later changes", func(t *testing.T) {
		tr := startTraffic(through, 20*time.Millisecond)
		killed := time.Now()
		if err := r1.Kill(); err != nil {
			t.Fatal(err)
		}
		var moved time.Duration
		eventually(t, "the caller on another replica", 5*time.Second, func() (bool, string) {
			st, err := caller.status(ctx)
			if err != nil {
				return false, err.Error()
			}
			if st.Connected && st.Replica != r1.XDSAddr {
				moved = time.Since(killed)
				return true, ""
			}
			return false, fmt.Sprintf("%+v", st)
		})
		t.Logf("caller reconnected %s after the kill", moved)
		if moved > 2*time.Second {
			t.Fatalf("caller reconnected only %s after its replica was killed", moved)
		}
		// A second backend registered after the move reaches the caller.
		app2 := startEcho(t, T, ports[5])
		startDP(t, T, bin, dir, "echo-2", echoDoc("echo-2", ports[6], ports[5]), []string{c.Replica(3).XDSAddr}).waitReady(t, ctx, 30*time.Second)
		eventually(t, "echo-2 in the caller's endpoints", 10*time.Second, func() (bool, string) {
			cfg := caller.config(ctx)
			return strings.Contains(cfg, fmt.Sprintf(`"portValue": %d`, ports[6])), "not yet"
		})
		eventually(t, "traffic reaches echo-2", 10*time.Second, func() (bool, string) {
			return app2.conns.Load() > 0, "no connection yet"
		})
		ok, fails := tr.stop()
		if len(fails) > 0 {
			t.Fatalf("%d of %d requests failed during the failover: %v", len(fails), ok+int64(len(fails)), fails)
		}
		t.Logf("%d requests, none failed", ok)
		if err := r1.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the replica a proxy uses is paused: it moves within a few seconds", func(t *testing.T) {
		paused := caller.replica(t, ctx, c)
		tr := startTraffic(through, 20*time.Millisecond)
		if err := paused.Pause(); err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		eventually(t, "the caller off the paused replica", 10*time.Second, func() (bool, string) {
			st, err := caller.status(ctx)
			if err != nil {
				return false, err.Error()
			}
			return st.Connected && st.Replica != paused.XDSAddr, fmt.Sprintf("%+v", st)
		})
		t.Logf("caller left the paused replica after %s", time.Since(at))
		if err := paused.Resume(); err != nil {
			t.Fatal(err)
		}
		ok, fails := tr.stop()
		if len(fails) > 0 {
			t.Fatalf("%d of %d requests failed while a replica was paused: %v", len(fails), ok+int64(len(fails)), fails)
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("one replica of three left: frozen but serving, no new proxies", func(t *testing.T) {
		survivor := caller.replica(t, ctx, c)
		tr := startTraffic(through, 20*time.Millisecond)
		var others []*tc.Replica
		for _, r := range c.Replicas() {
			if r != survivor {
				others = append(others, r)
				if err := r.Kill(); err != nil {
					t.Fatal(err)
				}
			}
		}
		eventually(t, "the survivor sees no leader", 15*time.Second, func() (bool, string) {
			ok, why := survivor.Ready(ctx)
			return !ok, why
		})
		// A new proxy cannot register, and says why.
		newPorts, err := tc.FreePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		late := startDP(t, T, bin, dir, "late-1", echoDoc("late-1", newPorts[0], newPorts[1]), []string{survivor.XDSAddr})
		eventually(t, "late-1 logs why it cannot register", 20*time.Second, func() (bool, string) {
			log := late.LogTail(20000)
			return strings.Contains(log, "cannot register") && strings.Contains(log, "quorum"), "not yet"
		})
		if code, _, body, err := tc.Get(ctx, "http://"+late.admin+"/ready"); err != nil || code != 503 {
			t.Fatalf("late-1 /ready: %d %s %v, want 503", code, body, err)
		}
		// A proxy whose Dataplane exists fetches its config from the survivor
		// (echo-1 restarted without its saved config).
		if err := echo1.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(echo1.stateDir); err != nil {
			t.Fatal(err)
		}
		echo1.Args = replaceArg(echo1.Args, "--cp-address", "grpc://"+survivor.XDSAddr)
		if err := echo1.Start(); err != nil {
			t.Fatal(err)
		}
		echo1.waitReady(t, ctx, 20*time.Second)
		if st, err := echo1.status(ctx); err != nil || st.ConfigSource != "control-plane" {
			t.Fatalf("echo-1 after restart: %+v %v, want config from the control plane", st, err)
		}
		ok, fails := tr.stop()
		// echo-1 was restarted: requests balanced to it while it was down
		// may fail over to echo-2; none may fail.
		if len(fails) > 0 {
			t.Fatalf("%d of %d requests failed without a quorum: %v", len(fails), ok+int64(len(fails)), fails)
		}
		t.Logf("%d requests without a quorum, none failed", ok)
		_ = late.Kill()
		for _, r := range others {
			if err := r.Restart(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("every replica down: traffic flows, a restarted proxy serves its saved config, the mesh converges after", func(t *testing.T) {
		logStart := logSize(t, caller)
		tr := startTraffic(through, 20*time.Millisecond)
		for _, r := range c.Replicas() {
			if err := r.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		down := time.Now()
		eventually(t, "the caller says it is frozen", 10*time.Second, func() (bool, string) {
			st, err := caller.status(ctx)
			if err != nil {
				return false, err.Error()
			}
			return st.Frozen && st.Ready, fmt.Sprintf("%+v", st)
		})
		// At least 10 s of traffic with the control plane down.
		eventually(t, "10s of traffic", 20*time.Second, func() (bool, string) { return time.Since(down) > 10*time.Second, "" })
		ok, fails := tr.stop()
		if len(fails) > 0 {
			t.Fatalf("%d of %d requests failed with every replica down: %v", len(fails), ok+int64(len(fails)), fails)
		}
		t.Logf("%d requests over %s with every replica down, none failed", ok, time.Since(down).Round(time.Second))
		if n := strings.Count(logSince(t, caller, logStart), "no control plane replica is reachable"); n != 1 {
			t.Fatalf("the caller logged being frozen %d times, want once", n)
		}

		// Restart the caller: SIGTERM drains and exits 0, and it serves
		// from its state dir at once when started again.
		if err := caller.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := caller.ExitErr(); err != nil {
			t.Fatalf("caller after SIGTERM: %v", err)
		}
		started := time.Now()
		if err := caller.Start(); err != nil {
			t.Fatal(err)
		}
		var first time.Duration
		eventually(t, "a request through the restarted caller", 5*time.Second, func() (bool, string) {
			if err := request(through, "again"); err != nil {
				return false, err.Error()
			}
			first = time.Since(started)
			return true, ""
		})
		t.Logf("the restarted caller served its saved config %s after it started", first)
		if first > time.Second {
			t.Fatalf("the restarted caller served only %s after it started", first)
		}
		if st, err := caller.status(ctx); err != nil || st.ConfigSource != "state-dir" {
			t.Fatalf("caller status %+v %v: want config from the state dir", st, err)
		}
		tr = startTraffic(through, 20*time.Millisecond)
		eventually(t, "frozen again after the restart", 10*time.Second, func() (bool, string) {
			st, err := caller.status(ctx)
			if err != nil {
				return false, err.Error()
			}
			return st.Frozen, fmt.Sprintf("%+v", st)
		})

		// The replicas come back: the mesh converges, a new backend gets traffic.
		for _, r := range c.Replicas() {
			if err := r.Restart(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the caller connected and not frozen", 15*time.Second, func() (bool, string) {
			st, err := caller.status(ctx)
			if err != nil {
				return false, err.Error()
			}
			// The config it kept may well be current: then the replica has
			// nothing to send, and the config source stays the state dir.
			return st.Connected && !st.Frozen, fmt.Sprintf("%+v", st)
		})
		app3 := startEcho(t, T, ports[7])
		startDP(t, T, bin, dir, "echo-3", echoDoc("echo-3", ports[8], ports[7]), []string{c.Replica(1).XDSAddr}).waitReady(t, ctx, 30*time.Second)
		eventually(t, "traffic reaches echo-3", 15*time.Second, func() (bool, string) {
			return app3.conns.Load() > 0, "no connection yet"
		})
		ok, fails = tr.stop()
		if len(fails) > 0 {
			t.Fatalf("%d of %d requests failed while the replicas came back: %v", len(fails), ok+int64(len(fails)), fails)
		}
	})
}

func replaceArg(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == flag && i+1 < len(out) {
			out[i+1] = value
		}
	}
	return out
}

func logSize(t *testing.T, d *dp) int64 {
	t.Helper()
	fi, err := os.Stat(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func logSince(t *testing.T, d *dp, off int64) string {
	t.Helper()
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[off:])
}

// TestBadInputExits: the built binary refuses bad input with a message
// naming the problem and exit status 1, before it starts anything.
func TestBadInputExits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built binary")
	}
	bin := filepath.Join(binDir(t), "kuma-dp")
	dir := t.TempDir()
	good := filepath.Join(dir, "dp.yaml")
	if err := os.WriteFile(good, []byte(echoDoc("web-1", 8080, 80)), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(echoDoc("web-1", 8080, 80), "port: 8080", "port: 99999", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"invalid dataplane file", []string{"--dataplane-file", bad}, []string{"--dataplane-file", "networking.inbound[0].port"}},
		{"missing dataplane file", []string{"--dataplane-file", filepath.Join(dir, "none.yaml")}, []string{"--dataplane-file", "none.yaml"}},
		{"address format", []string{"--dataplane-file", good, "--cp-address", "https://cp:5678"}, []string{"--cp-address", "https"}},
		{"state dir not writable", []string{"--dataplane-file", good, "--state-dir", filepath.Join(notDir, "state")}, []string{"--state-dir", "not a directory"}},
		{"admin address invalid", []string{"--dataplane-file", good, "--admin-addr", "256.0.0.1:1"}, []string{"--admin-addr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "--cp-address", "grpc://127.0.0.1:1", "--state-dir", filepath.Join(dir, tc.name)}, tc.args...)
			cmd := exec.Command(bin, args...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; output:\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not mention %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "panic") || strings.Contains(string(out), "goroutine") {
				t.Fatalf("panicked:\n%s", out)
			}
		})
	}
}
