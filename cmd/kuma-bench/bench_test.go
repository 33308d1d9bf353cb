package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(i + 1)
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", []time.Duration{ms(7)}, 99, ms(7)},
		{"p50 of 1..100", hundred, 50, ms(50)},
		{"p99 of 1..100", hundred, 99, ms(99)},
		{"p100 of 1..100", hundred, 100, ms(100)},
		{"p0 is the minimum", hundred, 0, ms(1)},
		{"p1 of 1..100", hundred, 1, ms(1)},
		{"p50 of 4 values is the lower middle", []time.Duration{ms(1), ms(2), ms(3), ms(4)}, 50, ms(2)},
		{"p99 of 10 values is the max", []time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(10)}, 99, ms(10)},
		{"over 100 clamps", []time.Duration{ms(1), ms(2)}, 150, ms(2)},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
	if got := median([]time.Duration{ms(9), ms(1), ms(5)}); got != ms(5) {
		t.Errorf("median = %v, want 5ms", got)
	}
}

func TestAnalyzeRound(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(n int) time.Time { return t0.Add(ms(n)) }
	kill := at(100)
	events := []writeEvent{
		{Start: at(0), End: at(10), OK: true},
		{Start: at(10), End: at(90), OK: true},
		{Start: at(95), End: at(150), OK: true}, // sent before the kill: does not end unavailability
		{Start: at(110), End: at(400), OK: false},
		{Start: at(400), End: at(700), OK: true},  // first success sent after the kill
		{Start: at(500), End: at(1000), OK: true}, // concurrent writer
		{Start: at(700), End: at(710), OK: true},
	}
	unavail, gap, ok := analyzeRound(events, kill)
	if !ok || unavail != ms(600) {
		t.Errorf("unavailability %v %v, want 600ms", unavail, ok)
	}
	if gap != ms(550) { // 150 -> 700
		t.Errorf("max gap %v, want 550ms", gap)
	}
	if _, _, ok := analyzeRound(events[:3], kill); ok {
		t.Error("no success after the kill should not count as recovered")
	}
}

func TestDataplaneDocSameSize(t *testing.T) {
	_, first := dataplaneDoc(0)
	for _, seq := range []uint64{1, 9, 10, 99, 100, 999, 5555, keySpace - 1, keySpace, 3*keySpace + 17} {
		name, doc := dataplaneDoc(seq)
		if len(doc) != len(first) {
			t.Errorf("seq %d: %d bytes, want %d: %s", seq, len(doc), len(first), doc)
		}
		if !bytes.Contains(doc, []byte(`"name":"`+name+`"`)) {
			t.Errorf("seq %d: doc does not carry name %s", seq, name)
		}
	}
}

func TestReportSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "BENCHMARKS.md")
	if err := updateReport(path, "failover", "## Leader failover\n\nfirst run"); err != nil {
		t.Fatal(err)
	}
	if err := updateReport(path, "writes", "## Writes\n\nwrites body"); err != nil {
		t.Fatal(err)
	}
	if err := updateReport(path, "failover", "## Leader failover\n\nsecond run"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"# Benchmarks", "## Method", "writes body", "second run", "_Not run yet: `kuma-bench snapshot`._"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "first run") {
		t.Errorf("old failover section kept:\n%s", text)
	}
	if w, f, s := strings.Index(text, "writes body"), strings.Index(text, "second run"), strings.Index(text, "kuma-bench snapshot"); !(w < f && f < s) {
		t.Errorf("sections out of order:\n%s", text)
	}
	// Another tool's sections after ours are kept.
	foreign := "<!-- kuma-xds-load:begin sotw -->\n## xDS\n<!-- kuma-xds-load:end sotw -->"
	if err := os.WriteFile(path, append(data, []byte("\n"+foreign+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateReport(path, "writes", "## Writes\n\nwrites body"); err != nil {
		t.Fatal(err)
	}
	if data, err = os.ReadFile(path); err != nil || !strings.Contains(string(data), foreign) {
		t.Fatalf("foreign section dropped: %v\n%s", err, data)
	}
	got := parseSections(data)
	if len(got) != len(sectionOrder) || got["writes"] != "## Writes\n\nwrites body" {
		t.Errorf("parseSections = %q", got)
	}
}

func TestWritesReport(t *testing.T) {
	cfg := &config{cmdline: "kuma-bench writes", duration: 10 * time.Second, quick: true}
	mk := func(sys string, c, ok int, errs map[string]int) *levelResult {
		r := &levelResult{System: sys, Concurrency: c, Elapsed: 10 * time.Second, OK: ok, Errors: errs}
		for i := range ok {
			r.Latencies = append(r.Latencies, ms(1+i%10))
		}
		return r
	}
	body := writesReport(cfg, machine{CPU: "Test CPU", NProc: 2}, time.Date(2025, 2, 3, 4, 5, 0, 0, time.UTC), 250, []*levelResult{
		mk("kuma-cp", 64, 20000, map[string]int{"HTTP 503 Service Unavailable": 3}),
		mk("etcd", 64, 40000, map[string]int{}),
	})
	for _, want := range []string{
		"Command: `kuma-bench writes`", "2025-02-03 04:05 UTC", "Test CPU, 2 CPUs", "Quick smoke run",
		"| kuma-cp | 64 | 2000 |", "| etcd | 64 | 4000 |", "3 (3× HTTP 503 Service Unavailable)",
		"kuma-cp / etcd throughput = **0.50**", "250-byte",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("writes report lacks %q:\n%s", want, body)
		}
	}
}

// fakeTarget counts writes and fails every tenth.
type fakeTarget struct{ n atomic.Int64 }

func (f *fakeTarget) Name() string   { return "fake" }
func (f *fakeTarget) Endpoints() int { return 3 }
func (f *fakeTarget) Write(ctx context.Context, endpoint int, seq uint64) error {
	if endpoint < 0 || endpoint >= 3 {
		return fmt.Errorf("endpoint %d out of range", endpoint)
	}
	if f.n.Add(1)%10 == 0 {
		return &statusError{Status: 503, Body: "no quorum"}
	}
	return nil
}

func TestRunLoadBounded(t *testing.T) {
	f := &fakeTarget{}
	res := runLoad(context.Background(), f, 4, time.Minute, 1000, 0)
	if got := res.OK + res.errorCount(); got != 1000 {
		t.Fatalf("ran %d writes, want exactly the 1000 budget", got)
	}
	if res.Errors["HTTP 503 Service Unavailable"] != 100 || res.OK != 900 || len(res.Latencies) != 900 {
		t.Fatalf("ok %d errors %v", res.OK, res.Errors)
	}
	for i := 1; i < len(res.Latencies); i++ {
		if res.Latencies[i] < res.Latencies[i-1] {
			t.Fatal("latencies not sorted")
		}
	}
	res = runLoad(context.Background(), &fakeTarget{}, 2, 20*time.Millisecond, maxOpsPerLevel, 0)
	if res.Elapsed > 5*time.Second || res.OK == 0 {
		t.Fatalf("time-bounded run: elapsed %v ok %d", res.Elapsed, res.OK)
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&statusError{Status: 503}, "HTTP 503 Service Unavailable"},
		{fmt.Errorf("put: %w", context.DeadlineExceeded), "timeout"},
		{errors.New(`Put "http://x": dial tcp: connection refused`), "connection refused"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		sub     string
		wantErr string
		check   func(*config) string
	}{
		{name: "flags after subcommand", args: []string{"all", "--bin-dir", "b", "--out", "X.md"}, sub: "all",
			check: func(c *config) string {
				if c.binDir != "b" || c.out != "X.md" || c.duration != 10*time.Second || c.rounds != 10 || c.count != 100000 {
					return fmt.Sprintf("%+v", c)
				}
				return ""
			}},
		{name: "quick shortens", args: []string{"--quick", "writes"}, sub: "writes",
			check: func(c *config) string {
				if c.duration != 2*time.Second || c.rounds != 3 || c.count != 10000 {
					return fmt.Sprintf("%+v", c)
				}
				return ""
			}},
		{name: "quick keeps explicit duration", args: []string{"--quick", "--duration", "5s", "writes"}, sub: "writes",
			check: func(c *config) string {
				if c.duration != 5*time.Second {
					return c.duration.String()
				}
				return ""
			}},
		{name: "no subcommand", args: nil, wantErr: "missing subcommand"},
		{name: "one system", args: []string{"--systems", "etcd", "writes"}, sub: "writes",
			check: func(c *config) string {
				if !c.systems["etcd"] || c.systems["kuma-cp"] {
					return fmt.Sprint(c.systems)
				}
				return ""
			}},
		{name: "unknown system", args: []string{"--systems", "consul", "writes"}, wantErr: `unknown system "consul"`},
		{name: "too few rounds", args: []string{"--rounds", "3", "failover"}, wantErr: "--rounds must be at least 10"},
		{name: "bad duration", args: []string{"--duration", "0s", "writes"}, wantErr: "--duration"},
		{name: "extra argument", args: []string{"writes", "more"}, wantErr: `unexpected argument "more"`},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		cfg, sub, err := parseArgs(append([]string{"kuma-bench"}, tt.args...), &stderr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || sub != tt.sub {
			t.Errorf("%s: sub %q err %v", tt.name, sub, err)
			continue
		}
		if msg := tt.check(cfg); msg != "" {
			t.Errorf("%s: %s", tt.name, msg)
		}
	}
	if err := run(context.Background(), []string{"kuma-bench", "bogus"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "unknown subcommand") {
		t.Errorf("bogus subcommand: %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"./bin/kuma-bench", "--out", "my file.md", "all"})
	if want := "./bin/kuma-bench --out 'my file.md' all"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := commandLine([]string{"/tmp/go-build123/b001/exe/kuma-bench", "writes"}); got != "go run ./cmd/kuma-bench writes" {
		t.Errorf("go run: got %q", got)
	}
}

// The documents the benchmarks write must be valid Dataplanes, or kuma-cp
// would answer 400 and the benchmark would measure errors.
func TestDocsAreValidDataplanes(t *testing.T) {
	var docs [][]byte
	for _, seq := range []uint64{0, 1, keySpace - 1} {
		_, d := dataplaneDoc(seq)
		docs = append(docs, d)
		_, d = namedDataplaneDoc("failover-r3", seq)
		docs = append(docs, d)
	}
	for _, i := range []int{0, 1, 65535, 99_999} {
		docs = append(docs, snapshotDoc(i))
	}
	for _, d := range docs {
		r, err := resource.Decode(d, resource.JSON)
		if err != nil {
			t.Errorf("decode %s: %v", d, err)
			continue
		}
		resource.Default(r)
		if verrs := resource.Validate(r); len(verrs) > 0 {
			t.Errorf("validate %s: %v", d, verrs)
		}
		if r.Type != "Dataplane" || r.Mesh != "default" {
			t.Errorf("decoded %s as %v", d, r.Key())
		}
	}
}
