package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

// TestMain lets the test binary be the dataplane benchmark's app process,
// as the kuma-bench binary is (the benchmark starts os.Executable()).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == cmdDPApp {
		os.Exit(runDPApp(os.Args[2:], os.Stdout))
	}
	code := m.Run()
	if err := testcluster.RemoveBuiltBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "remove built binaries:", err)
	}
	os.Exit(code)
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{"plain", "1234 (kuma-dp) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 9 0 100 0 0", 3800 * time.Millisecond, false},
		{"name with spaces and parens", "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 100 * time.Millisecond, false},
		{"truncated", "77 (x) R 1 2 3", 0, true},
		{"no name", "77 x R", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 a 3 0", 0, true},
	}
	for _, tt := range tests {
		got, err := parseStatCPU(tt.stat)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
	if d, err := cpuTime(0); err != nil || d < 0 {
		t.Errorf("cpuTime(self) = %v, %v", d, err)
	}
}

// The load functions against the app in this process: every measure
// completes, checks what it gets back, and respects its bounds.
func TestDataplaneLoadInProcess(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := startApp(ln)
	defer app.Close()
	ctx := context.Background()
	d := 100 * time.Millisecond

	tp, err := measureThroughput(ctx, app.Addr(), 3, d)
	if err != nil || tp.Bytes == 0 || countErrors(tp.Errors) != 0 || tp.MBps() <= 0 {
		t.Fatalf("throughput: %+v %v", tp, err)
	}
	per, err := measurePersistent(ctx, app.Addr(), d, func() {})
	if err != nil || len(per.Latencies) == 0 {
		t.Fatalf("persistent: %v", err)
	}
	nc, err := measureNewConns(ctx, app.Addr(), 4, time.Minute, 50, func() {})
	if err != nil || len(nc.Latencies) != 50 || nc.errorCount() != 0 {
		t.Fatalf("new connections: %d latencies, errors %v, %v; want exactly the budget of 50", len(nc.Latencies), nc.Errors, err)
	}
	for i := 1; i < len(nc.Latencies); i++ {
		if nc.Latencies[i] < nc.Latencies[i-1] {
			t.Fatal("latencies not sorted")
		}
	}

	// An interrupted measure returns promptly.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := measureThroughput(cctx, app.Addr(), 2, time.Minute); err == nil {
		t.Error("cancelled throughput: no error")
	}
	if _, err := measurePersistent(cctx, app.Addr(), time.Minute, func() {}); err == nil {
		t.Error("cancelled persistent: no error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancelled measures took %s", took)
	}

	// Nothing listens: an error, not a hang.
	app.Close()
	if _, err := measureNewConns(ctx, app.Addr(), 2, 200*time.Millisecond, 10, func() {}); err == nil {
		t.Error("new connections to a closed app: no error")
	}
}

func TestDataplaneReport(t *testing.T) {
	lat := func(base time.Duration, n int) *latResult {
		r := &latResult{Elapsed: time.Second, Errors: map[string]int{}}
		for i := range n {
			r.Latencies = append(r.Latencies, base+time.Duration(i)*time.Microsecond)
		}
		return r
	}
	cpu := func(caller, callee time.Duration) map[string]time.Duration {
		return map[string]time.Duration{procCaller: caller, procCallee: callee, procApp: 200 * time.Millisecond, procClient: 300 * time.Millisecond}
	}
	res := &dpResults{
		Duration: 5 * time.Second, Setup: 1200 * time.Millisecond, DPVersion: "kuma-dp test", LoadBefore: "4.00 3.00 2.00", LoadAfter: "4.50 3.00 2.00",
		RSSIdle:   map[string]int64{procCaller: 20 << 20, procCallee: 21 << 20},
		RSSPeak:   map[string]int64{procCaller: 30 << 20, procCallee: 31 << 20},
		RSSAfter:  map[string]int64{procCaller: 29 << 20, procCallee: 30 << 20},
		HWM:       map[string]int64{procCaller: 30 << 20, procCallee: 31 << 20},
		Listeners: map[string][]dpListener{procCaller: {{Name: "outbound:127.0.0.1:1", Direction: "outbound", Total: 42, BytesIn: 3e9}}},
	}
	for _, m := range dpMeasures {
		for _, path := range []string{"direct", "proxied"} {
			ph := &dpPhase{Measure: m.Key, Path: path, Wall: time.Second, CPU: cpu(0, 0)}
			if path == "proxied" {
				ph.CPU = cpu(600*time.Millisecond, 500*time.Millisecond)
			}
			switch {
			case strings.HasPrefix(m.Key, "tput"):
				mb := int64(2000e6)
				if path == "proxied" {
					mb = 500e6
				}
				ph.Tput = &tputResult{Conns: 8, Bytes: mb, Elapsed: time.Second, Errors: map[string]int{}}
			case path == "direct":
				ph.Lat = lat(20*time.Microsecond, 1000)
			default:
				ph.Lat = lat(60*time.Microsecond, 500)
				if m.Key == "rps" {
					ph.Lat.Errors["connection reset by peer"] = 2
				}
			}
			res.Phases = append(res.Phases, ph)
		}
	}
	cfg := &config{cmdline: "kuma-bench dataplane"}
	body := dataplaneReport(cfg, machine{CPU: "Test CPU", NProc: 2}, time.Date(2025, 2, 3, 4, 5, 0, 0, time.UTC), res)
	for _, want := range []string{
		"## Data plane proxy", "Command: `kuma-bench dataplane`", "Test CPU, 2 CPUs", "- kuma-dp: kuma-dp test",
		"Load average when the run started: 4.00 3.00 2.00",
		"| throughput, 1 connection | 2000 MB/s | 500 MB/s | −1500 MB/s | 0.25× |",
		"| round trip, persistent connection, p50 | 519 µs | 309 µs | −210 µs |",
		"| request on a new connection, p99.9 |",
		"| new connections, 16 concurrent: requests/s | 1000 | 500 | −500 | 0.50× |",
		"| errors | 0 | 2: 2× connection reset by peer (rps) |",
		"| kuma-dp caller | 20.0 MiB | 30.0 MiB | 29.0 MiB | 30.0 MiB | 0.00 | 3.00 |",
		"| bulk transfer, 8 connections | proxied | 1.00 s | 0.60 | 0.50 | 0.20 | 0.00 | 0.30 | 1.60 |",
		"reaches 25 % of the direct rate", "the caller used 1.2 ms of CPU",
		"outbound listener `outbound:127.0.0.1:1`: 42 connections, 0 failed, 3.0 GB in",
		"**A loaded machine**: load average 4.00 3.00 2.00 when the run started and 4.50 3.00 2.00 when it ended", "got at most 1.60 of the 2 cores",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("report lacks %q:\n%s", want, body)
		}
	}
}

// The whole benchmark, briefly, against built binaries: a kuma-cp, two
// kuma-dp and the app (this test binary, see TestMain).
func TestDataplaneBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kuma-cp, two kuma-dp and an app process")
	}
	root, err := testcluster.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := testcluster.BuildBinaries(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var logs bytes.Buffer
	cfg := &config{cmdline: "kuma-bench dataplane --quick", binDir: bin, quick: true, dpDuration: 150 * time.Millisecond,
		stderr: &logs, log: slog.New(slog.NewTextHandler(&logs, nil))}
	start := time.Now()
	body, err := benchDataplane(ctx, cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	t.Logf("took %s", time.Since(start))
	for _, want := range []string{
		"| throughput, 8 connections |", "| round trip, persistent connection, p99.9 |",
		"| new connections, 16 concurrent, p99 |", "| errors | 0 | 0 |", "| kuma-dp callee |",
		"kuma-dp caller outbound listener", "kuma-dp callee inbound listener", "Quick smoke run",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("report lacks %q:\n%s\n%s", want, body, logs.String())
		}
	}
}
