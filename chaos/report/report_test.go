package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

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

func TestImpact(t *testing.T) {
	w := func(complete int64, o history.Outcome) history.Op {
		return history.Op{Kind: history.Write, Invoke: complete - 1, Complete: complete, Outcome: o}
	}
	h := &history.History{
		Ops: []history.Op{w(5e9, history.OK), w(11e9, history.OK), w(12e9, history.Fail), w(16e9, history.OK), w(30e9, history.OK)},
		Faults: []history.Fault{
			{Nemesis: "pause", Start: 10e9, End: 20e9},
			{Nemesis: "pause", Start: 21e9, End: 25e9},
		},
	}
	imp := Impact(h)
	if imp[0].Decided != 2 || imp[0].Writes != 3 || imp[0].LongestGap != 5e9 {
		t.Errorf("first window: %+v", imp[0])
	}
	if imp[1].Decided != 0 || imp[1].LongestGap != 4e9 {
		t.Errorf("window without writes: %+v", imp[1])
	}
	rows := ByNemesis(h)
	if len(rows) != 1 || rows[0].Count != 2 || rows[0].MaxGap != 5e9 || rows[0].MeanGap != 4500*time.Millisecond {
		t.Errorf("rows: %+v", rows)
	}
	var buf bytes.Buffer
	if err := Markdown(&buf, &Data{Summary: "PASS: x", Verdicts: []check.Verdict{{Checker: "c", Result: check.Pass, Summary: "s"}}, History: h, Unavailable: [][2]string{{"clock-skew", "why"}}, Notes: []string{"n"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**PASS: x**", "| c | pass | s |", "| pause | 2 | 7s | 2 of 3 | 4.5s / 5s | 0 |", "- clock-skew: why", "- note: n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, buf.String())
		}
	}
}
