package chaos

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
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
