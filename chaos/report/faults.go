package report

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// FaultImpact is what one fault window did to the clients' writes.
type FaultImpact struct {
	// Writes invoked in the window, and how many of them the state machine
	// decided: applied, or rejected by it (412: version mismatch, 404: no
	// such resource). Either way the cluster committed an entry and
	// answered; the rest failed for want of a leader or a reply.
	Writes, Decided int
	// LongestGap is the longest stretch inside the window without a
	// decided write (from the window's start, between decisions, or until
	// its end): how long writes were unavailable.
	LongestGap time.Duration
}

// decided reports a write the state machine applied or rejected.
func decided(op history.Op) bool {
	return op.Outcome == history.OK || (op.Outcome == history.Fail && (op.Status == 404 || op.Status == 412))
}

// Impact measures every fault window of h, in order.
func Impact(h *history.History) []FaultImpact {
	var acked []int64
	var invoked []int64
	for _, op := range h.Ops {
		if op.Final || !op.IsWrite() {
			continue
		}
		invoked = append(invoked, op.Invoke)
		if decided(op) {
			acked = append(acked, op.Complete)
		}
	}
	slices.Sort(acked)
	slices.Sort(invoked)
	out := make([]FaultImpact, len(h.Faults))
	for i, f := range h.Faults {
		lo, _ := slices.BinarySearch(acked, f.Start)
		hi, _ := slices.BinarySearch(acked, f.End+1)
		prev := f.Start
		var gap int64
		for _, t := range acked[lo:hi] {
			gap = max(gap, t-prev)
			prev = t
		}
		gap = max(gap, f.End-prev)
		wlo, _ := slices.BinarySearch(invoked, f.Start)
		whi, _ := slices.BinarySearch(invoked, f.End+1)
		out[i] = FaultImpact{Writes: whi - wlo, Decided: hi - lo, LongestGap: time.Duration(gap)}
	}
	return out
}

// NemesisRow summarizes the windows of one nemesis.
type NemesisRow struct {
	Nemesis            string
	Count              int
	MeanLength         time.Duration
	Writes, Decided    int
	MeanGap, MaxGap    time.Duration
	Errors             int
	totalLen, totalGap time.Duration
}

// ByNemesis groups the fault windows of h by nemesis, in name order.
func ByNemesis(h *history.History) []NemesisRow {
	imp := Impact(h)
	rows := map[string]*NemesisRow{}
	for i, f := range h.Faults {
		r := rows[f.Nemesis]
		if r == nil {
			r = &NemesisRow{Nemesis: f.Nemesis}
			rows[f.Nemesis] = r
		}
		r.Count++
		r.totalLen += time.Duration(f.End - f.Start)
		r.Writes += imp[i].Writes
		r.Decided += imp[i].Decided
		r.totalGap += imp[i].LongestGap
		r.MaxGap = max(r.MaxGap, imp[i].LongestGap)
		if f.Error != "" {
			r.Errors++
		}
	}
	var out []NemesisRow
	for _, name := range sortedKeys(rows) {
		r := rows[name]
		r.MeanLength = (r.totalLen / time.Duration(r.Count)).Round(100 * time.Millisecond)
		r.MeanGap = (r.totalGap / time.Duration(r.Count)).Round(10 * time.Millisecond)
		r.MaxGap = r.MaxGap.Round(10 * time.Millisecond)
		out = append(out, *r)
	}
	return out
}

// Markdown writes the summary line, the verdicts, the operations, the
// proxy traffic and the per-nemesis table as Markdown (summary.md of a run,
// and CHAOS.md). It uses Summary, Verdicts, History, Replicas, Proxy,
// Unavailable and Notes of d.
func Markdown(w io.Writer, d *Data) error {
	h, unavailable, notes := d.History, d.Unavailable, d.Notes
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("**%s**\n\n", d.Summary)
	p("| checker | result | summary |\n| --- | --- | --- |\n")
	for _, v := range d.Verdicts {
		p("| %s | %s | %s |\n", v.Checker, v.Result, v.Summary)
	}
	st := Summarize(h)
	p("\nOperations (final reads not counted): %d; p50 %s, p99 %s of successful ones.\n\n", st.Total, st.P50.Round(100*time.Microsecond), st.P99.Round(100*time.Microsecond))
	p("| op | ok | fail | unknown |\n| --- | --- | --- | --- |\n")
	for _, k := range []history.Kind{history.Read, history.Write, history.CAS, history.Delete} {
		m := st.ByKind[k]
		p("| %s | %d | %d | %d |\n", k, m[history.OK], m[history.Fail], m[history.Unknown])
	}
	if d.Proxy != nil {
		ps := SummarizeProxy(d.Proxy)
		p("\nProxy traffic: %d TCP requests through %d caller proxies to %d callee proxies (kuma-dp), %d ok, %d failed; p50 %s, p99 %s, max %s of successful ones.\n\n",
			ps.Requests, ps.Callers, ps.Callees, ps.OK, ps.Failed, ps.P50, ps.P99, ps.Max)
		p("| proxy | role | requests | failed | replicas, in order | moves | not connected (total / longest) | frozen | exit |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, r := range ProxyRows(d.Proxy, d.Replicas) {
			p("| %s | %s | %d | %d | %s | %d | %s / %s | %s | %s |\n", r.Name, r.Role, r.Requests, r.Failed, r.Replicas, r.Moves, r.Disconnected, r.LongestDisconnected, r.Frozen, r.Exit)
		}
	}
	p("\nFaults, and what they did to writes. Decided: applied or rejected by the state machine (412, 404), i.e. committed and answered; the rest got no leader or no answer. Longest gap: the longest stretch of a window without a decided write.\n\n")
	p("| nemesis | windows | mean length | writes decided | longest gap (mean / max) | errors |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range ByNemesis(h) {
		p("| %s | %d | %s | %d of %d | %s / %s | %d |\n", r.Nemesis, r.Count, r.MeanLength, r.Decided, r.Writes, r.MeanGap, r.MaxGap, r.Errors)
	}
	if len(unavailable) > 0 {
		p("\nNot injected:\n\n")
		for _, u := range unavailable {
			p("- %s: %s\n", u[0], u[1])
		}
	}
	for i, n := range notes {
		if i == 0 {
			p("\n")
		}
		p("- note: %s\n", n)
	}
	return nil
}
