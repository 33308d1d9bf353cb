package envoy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
)

// newFakeEngine returns an Engine whose "Envoy" is this test binary acting
// as fakeEnvoy; it is shut down when the test ends.
func newFakeEngine(t *testing.T, log *slog.Logger, opts Options, extra ...string) *Engine {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts.Binary = bin
	opts.NodeID = "default.web-1"
	opts.Cluster = "web"
	opts.AdminAddr = "127.0.0.1:0"
	opts.Logger = log
	opts.ExtraArgs = append([]string{fakeEnvoyFlag}, extra...)
	opts.MinBackoff = 10 * time.Millisecond
	opts.MaxBackoff = 50 * time.Millisecond
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return e
}

func start(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// fromEnvoy matches a line Envoy (the fake) wrote, logged by the engine.
func fromEnvoy(s string) func(logRecord) bool {
	return func(r logRecord) bool { return r.Attrs["component"] == "envoy" && strings.Contains(r.Msg, s) }
}

// configReceived waits until the Envoy with pid (0: any) has the relay's
// current config, and returns that Envoy's pid.
func configReceived(t *testing.T, e *Engine, logs *logCapture, notPid int) int {
	t.Helper()
	var pid int
	waitFor(t, "Envoy to get the relay's config", func() bool {
		v := e.Info().Relay.Versions
		want := "versions=" + versionsString(v)
		rs := logs.records(func(r logRecord) bool {
			return r.Attrs["component"] == "envoy" && strings.Contains(r.Msg, "fake envoy: config received") &&
				strings.HasSuffix(r.Msg, want) && r.Attrs["pid"] != strconv.Itoa(notPid)
		})
		if len(v) == 0 || len(rs) == 0 {
			return false
		}
		pid, _ = strconv.Atoi(rs[len(rs)-1].Attrs["pid"])
		return true
	})
	return pid
}

func TestEngineRunsEnvoy(t *testing.T) {
	log, logs := newLogCapture(t)
	dir := t.TempDir()
	e := newFakeEngine(t, log, Options{WorkDir: dir}, "--fake-active", "2")
	cfg := generate(t, webDP, backend1)

	// Applied before Start: kept, served once the relay runs.
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); len(st.Listeners) != 3 || st.Listeners[0].Error != "" || st.Listeners[0].Active != 0 {
		t.Fatalf("status before Start %+v", st)
	}
	start(t, e)
	if err := e.Start(context.Background()); err == nil {
		t.Fatal("second Start: no error")
	}
	boot := logs.waitLog(t, "the bootstrap checked", fromEnvoy("fake envoy: bootstrap ok node=default.web-1 cluster=web relay="+e.Info().RelayAddr))
	if boot.Level != slog.LevelInfo {
		t.Errorf("info line logged at %v", boot.Level)
	}
	if w := logs.waitLog(t, "a warning", fromEnvoy("a warning for the level mapping")); w.Level != slog.LevelWarn || strings.HasPrefix(w.Msg, "warning|") {
		t.Errorf("warning line logged as %v %q", w.Level, w.Msg)
	}
	pid := configReceived(t, e, logs, 0)
	if boot.Attrs["pid"] != strconv.Itoa(pid) {
		t.Errorf("pid attribute %q, Envoy's %d", boot.Attrs["pid"], pid)
	}
	if _, err := os.Stat(filepath.Join(dir, BootstrapFile)); err != nil {
		t.Fatal(err)
	}

	// Status from Envoy's admin (found through --admin-address-path).
	waitFor(t, "the admin address", func() bool { return e.Info().AdminAddr != "" })
	st := e.Status()
	if len(st.Listeners) != 3 || len(st.Clusters) != 3 {
		t.Fatalf("status %+v", st)
	}
	in := st.Listeners[0]
	if in.Name != "inbound:127.0.0.1:18080" || in.Direction != proxy.DirectionInbound || in.Active != 2 || in.Total != 7 ||
		in.BytesIn != 100 || in.BytesOut != 200 || in.NoCluster != 1 || in.Error != "" {
		t.Fatalf("inbound listener %+v", in)
	}
	if c := st.Clusters[0]; c.Name != "backend" || len(c.Endpoints) != 1 || c.Endpoints[0] != (proxy.EndpointStatus{Address: "10.0.0.2:8080", Active: 2}) {
		t.Fatalf("backend cluster %+v", c)
	}
	info := e.Info()
	if info.PID != pid || info.Restarts != 0 || info.Relay.Streams != 1 || info.RelayAddr == "" {
		t.Fatalf("info %+v", info)
	}

	// Validate leaves it to Envoy; Apply reaches it.
	if err := e.Validate(proxy.Config{}); err != nil {
		t.Fatal(err)
	}
	cfg2 := generate(t, webDP, backend1, backend2)
	if err := e.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	configReceived(t, e, logs, 0)
	waitFor(t, "two backend endpoints in the status", func() bool {
		return len(e.Status().Clusters[0].Endpoints) == 2
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	drain := logs.index(fromEnvoy("fake envoy: drain_listeners"))
	drained := logs.index(msgHas("drained: no connection left"))
	term := logs.index(fromEnvoy("fake envoy: SIGTERM, exiting"))
	if drain < 0 || drained < drain || term < drained {
		t.Fatalf("drain request at %d, drained at %d, SIGTERM at %d", drain, drained, term)
	}
	if info := e.Info(); info.PID != 0 || info.Relay.Streams != 0 {
		t.Fatalf("info after shutdown %+v", info)
	}
	if err := e.Apply(cfg); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Shutdown: %v", err)
	}
	if err := e.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Shutdown: %v", err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); len(st.Listeners) != 3 || st.Listeners[0].Active != 0 {
		t.Fatalf("status after shutdown %+v", st)
	}
	if n := len(logs.records(func(r logRecord) bool { return r.Level >= slog.LevelError })); n != 0 {
		t.Fatalf("%d errors logged", n)
	}
}

// TestEngineRestartsEnvoy: Envoy killed from outside is started again and
// gets the config from the relay.
func TestEngineRestartsEnvoy(t *testing.T) {
	log, logs := newLogCapture(t)
	e := newFakeEngine(t, log, Options{WorkDir: t.TempDir()})
	if err := e.Apply(generate(t, webDP, backend1)); err != nil {
		t.Fatal(err)
	}
	start(t, e)
	pid := configReceived(t, e, logs, 0)
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	pid2 := configReceived(t, e, logs, pid)
	if pid2 == pid {
		t.Fatal("same pid")
	}
	exit := logs.waitLog(t, "the exit", msgHas("Envoy exited unexpectedly"))
	if exit.Level != slog.LevelWarn || exit.Attrs["pid"] != strconv.Itoa(pid) || !strings.Contains(exit.Attrs["exit"], "killed") {
		t.Fatalf("exit logged as %+v", exit)
	}
	waitFor(t, "the new Envoy's admin", func() bool { return e.Info().AdminAddr != "" })
	if info := e.Info(); info.PID != pid2 || info.Restarts != 1 {
		t.Fatalf("info %+v", info)
	}
	if st := e.Status(); len(st.Listeners) != 3 || st.Listeners[0].Total != 7 {
		t.Fatalf("status from the new Envoy %+v", st)
	}
}

// TestEngineCrashLoop: an Envoy that cannot run is restarted with backoff
// until Shutdown, which returns at once; the temporary work dir goes.
func TestEngineCrashLoop(t *testing.T) {
	log, logs := newLogCapture(t)
	e := newFakeEngine(t, log, Options{}, "--fake-fail")
	start(t, e)
	waitFor(t, "three restarts", func() bool { return e.Info().Restarts >= 3 })
	if r := logs.waitLog(t, "the failure", fromEnvoy("failing as told")); r.Level != slog.LevelError {
		t.Fatalf("critical line logged at %v", r.Level)
	}
	exits := logs.records(msgHas("Envoy exited unexpectedly"))
	if len(exits) < 3 || exits[0].Attrs["exit"] != "exit status 1" {
		t.Fatalf("exits logged %+v", exits)
	}
	e.mu.Lock()
	dir := e.mu.workDir
	e.mu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, BootstrapFile)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temporary work dir left: %v", err)
	}
}

// TestEngineKillsStubbornEnvoy: SIGKILL after KillAfter.
func TestEngineKillsStubbornEnvoy(t *testing.T) {
	log, logs := newLogCapture(t)
	e := newFakeEngine(t, log, Options{WorkDir: t.TempDir(), KillAfter: time.Second}, "--fake-ignore-sigterm")
	if err := e.Apply(generate(t, webDP)); err != nil {
		t.Fatal(err)
	}
	start(t, e)
	configReceived(t, e, logs, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if logs.index(fromEnvoy("ignoring SIGTERM")) < 0 || logs.index(msgHas("did not exit after SIGTERM; killing it")) < 0 {
		t.Fatal("no SIGTERM ignored, or no kill")
	}
}

// TestEngineDrainBoundedByCtx: connections that do not end make Shutdown
// return ctx's error, after Envoy has been stopped all the same.
func TestEngineDrainBoundedByCtx(t *testing.T) {
	log, logs := newLogCapture(t)
	e := newFakeEngine(t, log, Options{WorkDir: t.TempDir()}, "--fake-active", "1", "--fake-stuck")
	if err := e.Apply(generate(t, webDP)); err != nil {
		t.Fatal(err)
	}
	start(t, e)
	configReceived(t, e, logs, 0)
	waitFor(t, "the admin address", func() bool { return e.Info().AdminAddr != "" })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := e.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 active") {
		t.Fatalf("Shutdown: %v", err)
	}
	if logs.index(fromEnvoy("SIGTERM, exiting")) < 0 {
		t.Fatal("Envoy not stopped")
	}
}

func TestEngineStartFails(t *testing.T) {
	log, _ := newLogCapture(t)
	e, err := New(Options{Binary: filepath.Join(t.TempDir(), "no-envoy"), NodeID: "default.web-1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "no-envoy") {
		t.Fatalf("Start: %v", err)
	}
	if info := e.Info(); info.RelayAddr != "" || info.PID != 0 {
		t.Fatalf("left running: %+v", info)
	}
	if err := e.Apply(generate(t, webDP)); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err == nil {
		t.Fatal("second Start: no error")
	}
	if st := e.Status(); len(st.Listeners) != 3 {
		t.Fatalf("the config applied before a failed Start is lost: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a canceled ctx: %v", err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no binary", Options{NodeID: "m.p"}, "Binary: required"},
		{"no node", Options{Binary: "envoy"}, "NodeID: required"},
		{"node without mesh", Options{Binary: "envoy", NodeID: "web"}, "NodeID"},
		{"admin host name", Options{Binary: "envoy", NodeID: "m.p", AdminAddr: "localhost:9901"}, "AdminAddr"},
		{"negative", Options{Binary: "envoy", NodeID: "m.p", DrainTime: -1}, "negative"},
		{"backoff", Options{Binary: "envoy", NodeID: "m.p", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEngineArgs(t *testing.T) {
	e, err := New(Options{Binary: "envoy", NodeID: "m.p", DrainTime: 1500 * time.Millisecond, ExtraArgs: []string{"--concurrency", "2"}})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(e.args("/w"), " ")
	want := "-c /w/bootstrap.yaml --drain-time-s 2 --parent-shutdown-time-s 17 --disable-hot-restart " +
		"--admin-address-path /w/admin-address --log-level info --log-format %l|%v --concurrency 2"
	if got != want {
		t.Fatalf("args\n got %s\nwant %s", got, want)
	}
}

func TestBackoff(t *testing.T) {
	e, err := New(Options{Binary: "envoy", NodeID: "m.p", MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		full time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {50, time.Second}} {
		for range 20 {
			if d := e.backoff(tc.n); d < tc.full/2 || d >= tc.full {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s)", tc.n, d, tc.full/2, tc.full)
			}
		}
	}
}

func TestLineLogger(t *testing.T) {
	log, logs := newLogCapture(t)
	w := &lineLogger{log: log}
	for _, chunk := range []string{"info|one", " line\nwarning|two\r\n\nerror|thr", "ee\nno level here\ncritical|", "four"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	w.flush()
	got := logs.records(func(logRecord) bool { return true })
	want := []logRecord{
		{slog.LevelInfo, "one line", nil}, {slog.LevelWarn, "two", nil}, {slog.LevelError, "three", nil},
		{slog.LevelInfo, "no level here", nil}, {slog.LevelError, "four", nil},
	}
	if len(got) != len(want) {
		t.Fatalf("records %+v", got)
	}
	for i := range want {
		if got[i].Level != want[i].Level || got[i].Msg != want[i].Msg {
			t.Errorf("record %d: %v %q, want %v %q", i, got[i].Level, got[i].Msg, want[i].Level, want[i].Msg)
		}
	}
	long := strings.Repeat("x", maxLine+10)
	if _, err := w.Write([]byte(long)); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.records(func(r logRecord) bool { return len(r.Msg) >= maxLine })); n != 1 {
		t.Fatalf("an overlong line logged %d times", n)
	}
	if !slices.Equal([]byte(nil), w.buf) && len(w.buf) != 0 {
		t.Fatalf("buffer left %d", len(w.buf))
	}
}
