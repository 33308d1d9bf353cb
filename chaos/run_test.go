package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
	"github.com/kuma-ha/kuma-ha/chaos/report"
)

func TestRecheck(t *testing.T) {
	dir := t.TempDir()
	h := &history.History{Start: time.Now(), Ops: []history.Op{
		{ID: 1, Kind: history.Write, Key: "k", Value: "a", Version: 5, Status: 201, Invoke: 1, Complete: 2, Outcome: history.OK, Replica: "cp-1"},
		{ID: 2, Kind: history.Write, Key: "k", Value: "b", Version: 7, Status: 200, Invoke: 3, Complete: 4, Outcome: history.OK, Replica: "cp-1"},
		{ID: 3, Kind: history.Read, Key: "k", Value: "b", Version: 7, Found: true, Consistent: true, Final: true, Invoke: 5, Complete: 6, Outcome: history.OK, Replica: "cp-2"},
	}}
	if err := h.Save(filepath.Join(dir, "history.jsonl")); err != nil {
		t.Fatal(err)
	}
	res, err := Recheck(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	vs := res.Verdicts
	byName := map[string]check.Verdict{}
	for _, v := range vs {
		byName[v.Checker] = v
	}
	if byName["linearizable"].Result != check.Pass || byName["no-lost-writes"].Result != check.Pass {
		t.Fatalf("valid history: %v", vs)
	}
	// Without states.json and recovery.json those checkers cannot pass.
	if byName["convergence"].OK() || byName["recovery"].OK() {
		t.Errorf("missing evidence passed: %v", vs)
	}
	// The final read now shows the older write: lost.
	h.Ops[2].Value, h.Ops[2].Version = "a", 5
	if err := h.Save(filepath.Join(dir, "history.jsonl")); err != nil {
		t.Fatal(err)
	}
	res, err = Recheck(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed {
		t.Error("a run with a lost write passed")
	}
	for _, v := range res.Verdicts {
		if (v.Checker == "linearizable" || v.Checker == "no-lost-writes") && v.Result != check.Fail {
			t.Errorf("lost write: %s", v)
		}
	}
	for _, f := range []string{"verdicts.json", "summary.md", "report.html"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("not written: %v", err)
		}
	}
	if _, err := Recheck(filepath.Join(dir, "missing"), time.Second); err == nil {
		t.Error("no history: no error")
	}
}

// TestRecheckProxyTraffic: kuma-chaos check reads proxy-traffic.jsonl and
// judges it; a request that failed while only a replica was killed fails
// the run.
func TestRecheckProxyTraffic(t *testing.T) {
	dir := t.TempDir()
	h := &history.History{Start: time.Now(), Faults: []history.Fault{{Nemesis: "kill", Targets: []string{"cp-1"}, Start: 10e9, End: 20e9}}}
	if err := h.Save(filepath.Join(dir, "history.jsonl")); err != nil {
		t.Fatal(err)
	}
	info := RunInfo{Backend: "process/loopback", Replicas: []string{"cp-1"}, Proxies: []report.ProxyInfo{
		{Name: "echo-1", Role: "callee", Listen: "127.0.0.1:2"}, {Name: "caller-1", Role: "caller", Listen: "127.0.0.1:1", Exit: "exit status 0"}}}
	if err := writeJSON(filepath.Join(dir, "run.json"), info); err != nil {
		t.Fatal(err)
	}
	reqs := []check.ProxyRequest{
		{Proxy: "caller-1", Invoke: 5e9, Complete: 5e9 + 1e6, OK: true},
		{Proxy: "caller-1", Invoke: 15e9, Complete: 15e9 + 1e6, OK: true},
	}
	events := []check.ProxyEvent{
		{At: 1e9, Proxy: "caller-1", Connected: true, Replica: "cp-1", Version: `"1.a"`},
		{At: 10e9, Proxy: "caller-1", Connected: false, Frozen: true, Version: `"1.a"`},
		{At: 12e9, Proxy: "caller-1", Connected: true, Replica: "cp-2", Version: `"1.a"`},
	}
	write := func() {
		t.Helper()
		if err := saveProxyRequests(filepath.Join(dir, proxyRequestsFile), reqs); err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(filepath.Join(dir, proxiesFile), proxiesDoc{PollEvery: "500ms", Timeout: "2s", MonitorEnd: 30e9, Events: events}); err != nil {
			t.Fatal(err)
		}
	}
	verdict := func(res *Result) check.Verdict {
		for _, v := range res.Verdicts {
			if v.Checker == "proxy-traffic" {
				return v
			}
		}
		t.Fatal("no proxy-traffic verdict")
		return check.Verdict{}
	}
	write()
	res, err := Recheck(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v := verdict(res); v.Result != check.Pass || !strings.Contains(v.Summary, "all 2 requests") {
		t.Errorf("working proxies: %s", v)
	}
	if !strings.Contains(res.Summary, "2 proxy requests (0 failed) through 2 kuma-dp") {
		t.Errorf("summary: %s", res.Summary)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "summary.md"))
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for _, want := range []string{"Proxy traffic: 2 TCP requests", "| caller-1 | caller | 2 | 0 | cp-1 → cp-2 | 1 | 2s / 2s | 2s | exit status 0 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	for _, want := range []string{"<h2>Proxy traffic</h2>", ">proxy traffic</text>", "caller-1 connected to no replica, configuration frozen"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	reqs[1].OK, reqs[1].Err = false, "read echo: connection reset by peer"
	write()
	res, err = Recheck(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v := verdict(res); v.Result != check.Fail || res.Passed {
		t.Errorf("a request failed while only cp-1 was killed: %s", v)
	}
}
