package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

func TestRender(t *testing.T) {
	h := &history.History{
		Ops: []history.Op{
			{ID: 1, Kind: history.Write, Key: "k", Value: "<v>", Invoke: 1e8, Complete: 2e8, Outcome: history.OK},
			{ID: 2, Kind: history.Read, Key: "k", Invoke: 15e8, Complete: 25e8, Outcome: history.Unknown},
			{ID: 3, Kind: history.Read, Key: "k", Invoke: 3e9, Complete: 31e8, Outcome: history.OK, Final: true},
		},
		Faults: []history.Fault{{Nemesis: "pause", Targets: []string{"cp-2"}, Detail: "<leader>", Start: 1e9, End: 2e9}},
	}
	var buf bytes.Buffer
	err := Render(&buf, &Data{
		Title: "t", Summary: "FAIL: x", Replicas: []string{"cp-1", "cp-2"}, History: h, HealedAt: 28e8,
		Verdicts:    []check.Verdict{{Checker: "linearizable", Result: check.Fail, Summary: "bad", Problems: []string{"p1"}}},
		Unavailable: [][2]string{{"clock-skew", "shared clock"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"<svg", "</svg>", "FAIL: x", "r-fail", "p1", "pause", "cp-2", "clock-skew", "shared clock", "healed", "&lt;leader&gt;"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "<leader>") || strings.Contains(out, "<script") {
		t.Error("unescaped text or a script in the report")
	}
	st := Summarize(h)
	if st.Total != 2 || st.ByOutcome[history.Unknown] != 1 || st.Keys != 1 {
		t.Errorf("stats = %+v", st)
	}
}
