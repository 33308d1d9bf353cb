// Package report renders a chaos run as one self-contained HTML file: the
// summary line, the checker verdicts, an SVG timeline of faults, throughput
// and latencies, and tables of faults and operations. No scripts, no
// external resources.
package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// Data is everything the report shows.
type Data struct {
	Title    string
	Summary  string // the one-line summary
	Passed   bool
	Config   [][2]string // ordered key/value pairs
	Replicas []string
	Verdicts []check.Verdict
	History  *history.History
	// Unavailable lists faults the backend could not inject, with reasons.
	Unavailable [][2]string
	// HealedAt is when every fault was healed (ns since start), 0 if never.
	HealedAt int64
	Notes    []string
	// Proxy is the proxy traffic workload's record; nil without one.
	Proxy *ProxyData
}

// Stats summarizes the operations of a history.
type Stats struct {
	Total     int
	ByOutcome map[history.Outcome]int
	ByKind    map[history.Kind]map[history.Outcome]int
	Keys      int
	// Latency percentiles of successful operations.
	P50, P99, Max time.Duration
}

// Summarize counts operations (final reads excluded).
func Summarize(h *history.History) Stats {
	s := Stats{ByOutcome: map[history.Outcome]int{}, ByKind: map[history.Kind]map[history.Outcome]int{}}
	keys := map[string]bool{}
	var lat []time.Duration
	for _, op := range h.Ops {
		if op.Final {
			continue
		}
		s.Total++
		s.ByOutcome[op.Outcome]++
		if s.ByKind[op.Kind] == nil {
			s.ByKind[op.Kind] = map[history.Outcome]int{}
		}
		s.ByKind[op.Kind][op.Outcome]++
		keys[op.Key] = true
		if op.Outcome == history.OK {
			lat = append(lat, op.Latency())
		}
	}
	s.Keys = len(keys)
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50 = lat[len(lat)/2]
		s.P99 = lat[len(lat)*99/100]
		s.Max = lat[len(lat)-1]
	}
	return s
}

// FaultCounts counts the fault windows per nemesis.
func FaultCounts(h *history.History) map[string]int {
	out := map[string]int{}
	for _, f := range h.Faults {
		out[f.Nemesis]++
	}
	return out
}

// Render writes the HTML report.
func Render(w io.Writer, d *Data) error {
	st := Summarize(d.History)
	view := struct {
		*Data
		Stats    Stats
		Timeline template.HTML
		Kinds    []kindRow
		Faults   []faultRow
		Nemeses  []NemesisRow
		Counts   string
		Proxies  []ProxyRow
		PStats   ProxyStats
	}{Data: d, Stats: st, Timeline: template.HTML(timeline(d)), Nemeses: ByNemesis(d.History)}
	if d.Proxy != nil {
		view.Proxies = ProxyRows(d.Proxy, d.Replicas)
		view.PStats = SummarizeProxy(d.Proxy)
	}
	for _, k := range []history.Kind{history.Read, history.Write, history.CAS, history.Delete} {
		m := st.ByKind[k]
		view.Kinds = append(view.Kinds, kindRow{Kind: string(k), OK: m[history.OK], Fail: m[history.Fail], Unknown: m[history.Unknown]})
	}
	impact := Impact(d.History)
	for i, f := range d.History.Faults {
		view.Faults = append(view.Faults, faultRow{
			Nemesis: f.Nemesis, Targets: strings.Join(f.Targets, ", "), Detail: f.Detail,
			Start: secs(f.Start), End: secs(f.End), Length: secs(f.End - f.Start), Error: f.Error,
			Decided: fmt.Sprintf("%d of %d", impact[i].Decided, impact[i].Writes), Gap: impact[i].LongestGap.Round(10 * time.Millisecond).String(),
		})
	}
	var counts []string
	fc := FaultCounts(d.History)
	for _, k := range sortedKeys(fc) {
		counts = append(counts, fmt.Sprintf("%s ×%d", k, fc[k]))
	}
	view.Counts = strings.Join(counts, ", ")
	return page.Execute(w, view)
}

type kindRow struct {
	Kind              string
	OK, Fail, Unknown int
}

type faultRow struct {
	Nemesis, Targets, Detail, Start, End, Length, Error, Decided, Gap string
}

func secs(ns int64) string { return fmt.Sprintf("%.1fs", float64(ns)/1e9) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Colors of outcomes and nemeses.
var (
	outcomeColor = map[history.Outcome]string{history.OK: "#2e7d32", history.Fail: "#ef6c00", history.Unknown: "#c62828"}
	palette      = []string{"#5c6bc0", "#ab47bc", "#26a69a", "#ffa726", "#8d6e63", "#ec407a", "#78909c", "#d4e157", "#29b6f6", "#7e57c2", "#66bb6a"}
)

func nemesisColor(name string, names []string) string {
	i := slices.Index(names, name)
	if i < 0 {
		i = 0
	}
	return palette[i%len(palette)]
}

// timeline draws three stacked panels sharing the time axis: fault windows
// per replica, operations per second by outcome, and the latency of every
// operation (log scale) by outcome.
func timeline(d *Data) string {
	h := d.History
	var end int64 = 1
	for _, op := range h.Ops {
		end = max(end, op.Complete)
	}
	for _, f := range h.Faults {
		end = max(end, f.End)
	}
	const (
		width  = 1100.0
		left   = 70.0
		right  = 20.0
		laneH  = 18.0
		barsH  = 90.0
		latH   = 220.0
		gap    = 28.0
		plotW  = width - left - right
		minLat = 1e-4 // seconds
		maxLat = 30.0
	)
	if d.Proxy != nil {
		for _, r := range d.Proxy.Requests {
			end = max(end, r.Complete)
		}
	}
	x := func(ns int64) float64 { return left + plotW*float64(ns)/float64(end) }
	var b strings.Builder
	replicas := d.Replicas
	lanes := len(replicas) + 1 // the legend is the last
	if d.Proxy != nil {
		lanes += 1 + len(d.Proxy.Proxies)
	}
	lanesH := laneH * float64(lanes)
	top := 10.0
	barsTop := top + lanesH + gap
	latTop := barsTop + barsH + gap
	height := latTop + latH + 40
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, width, height)

	// Fault lanes.
	var names []string
	for _, f := range h.Faults {
		if !slices.Contains(names, f.Nemesis) {
			names = append(names, f.Nemesis)
		}
	}
	slices.Sort(names)
	for i, r := range replicas {
		y := top + laneH*float64(i)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`, left-6, y+12, template.HTMLEscapeString(r))
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, left, width-right, y+laneH/2, y+laneH/2)
	}
	for _, f := range h.Faults {
		for i, r := range replicas {
			if !slices.Contains(f.Targets, r) {
				continue
			}
			y := top + laneH*float64(i)
			w := math.Max(x(f.End)-x(f.Start), 1.5)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" opacity="0.85"><title>%s %s %s (%s–%s)</title></rect>`,
				x(f.Start), y+2, w, laneH-4, nemesisColor(f.Nemesis, names),
				template.HTMLEscapeString(f.Nemesis), template.HTMLEscapeString(strings.Join(f.Targets, ",")), template.HTMLEscapeString(f.Detail), secs(f.Start), secs(f.End))
		}
	}
	proxyLanes := 0
	if d.Proxy != nil {
		proxyLanes = proxyTimeline(&b, d, top+laneH*float64(len(replicas)), x, end, left, width-right, laneH)
	}
	// Legend of nemeses.
	lx := left
	ly := top + laneH*float64(len(replicas)+proxyLanes) + 12
	for _, n := range names {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`, lx, ly-9, nemesisColor(n, names), lx+13, ly, template.HTMLEscapeString(n))
		lx += 20 + 7*float64(len(n))
	}
	if d.HealedAt > 0 {
		hx := x(d.HealedAt)
		anchor, tx := "start", hx+3
		if hx > width-right-60 {
			anchor, tx = "end", hx-3
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#000" stroke-dasharray="4,3"/><text x="%.1f" y="%.0f" text-anchor="%s">healed</text>`,
			hx, hx, top, latTop+latH, tx, barsTop-4, anchor)
	}

	// Throughput per second, stacked by outcome.
	buckets := int(end/1e9) + 1
	counts := make([]map[history.Outcome]int, buckets)
	maxCount := 1
	for _, op := range h.Ops {
		if op.Final {
			continue // the burst of final reads would flatten the rest
		}
		i := int(op.Invoke / 1e9)
		if counts[i] == nil {
			counts[i] = map[history.Outcome]int{}
		}
		counts[i][op.Outcome]++
	}
	for _, c := range counts {
		maxCount = max(maxCount, c[history.OK]+c[history.Fail]+c[history.Unknown])
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">operations started per second</text><text x="%.0f" y="%.0f" text-anchor="end">%d</text>`, left, barsTop-6, left-6, barsTop+8, maxCount)
	bw := plotW / float64(buckets)
	for i, c := range counts {
		y := barsTop + barsH
		for _, o := range []history.Outcome{history.OK, history.Fail, history.Unknown} {
			if c[o] == 0 {
				continue
			}
			hgt := barsH * float64(c[o]) / float64(maxCount)
			y -= hgt
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%ds: %d %s</title></rect>`,
				left+bw*float64(i), y, math.Max(bw-0.5, 0.5), hgt, outcomeColor[o], i, c[o], o)
		}
	}
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#999"/>`, left, width-right, barsTop+barsH, barsTop+barsH)

	// Latency scatter, log scale.
	ly2 := func(sec float64) float64 {
		sec = math.Min(math.Max(sec, minLat), maxLat)
		return latTop + latH - latH*(math.Log10(sec)-math.Log10(minLat))/(math.Log10(maxLat)-math.Log10(minLat))
	}
	for _, tick := range []float64{1e-3, 1e-2, 1e-1, 1, 10} {
		y := ly2(tick)
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`,
			left, width-right, y, y, left-6, y+4, time.Duration(tick*1e9))
	}
	step := 1
	if len(h.Ops) > 20000 {
		step = len(h.Ops)/20000 + 1
	}
	for i, op := range h.Ops {
		// Unknown outcomes are always drawn; the rest is sampled evenly.
		if op.Outcome != history.Unknown && i%step != 0 {
			continue
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.6" fill="%s" fill-opacity="0.6"/>`, x(op.Invoke), ly2(float64(op.Latency())/1e9), outcomeColor[op.Outcome])
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">latency of each operation (log scale)</text>`, left, latTop-6)
	// Time axis.
	axisY := latTop + latH
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#999"/>`, left, width-right, axisY, axisY)
	tickEvery := niceStep(float64(end) / 1e9 / 10)
	for t := 0.0; t <= float64(end)/1e9; t += tickEvery {
		px := x(int64(t * 1e9))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#999"/><text x="%.1f" y="%.0f" text-anchor="middle">%gs</text>`, px, px, axisY, axisY+4, px, axisY+16, t)
	}
	// Outcome legend.
	ox := left
	for _, o := range []history.Outcome{history.OK, history.Fail, history.Unknown} {
		fmt.Fprintf(&b, `<circle cx="%.0f" cy="%.0f" r="4" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`, ox, axisY+30, outcomeColor[o], ox+7, axisY+34, o)
		ox += 70
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func niceStep(raw float64) float64 {
	for _, s := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if s >= raw {
			return s
		}
	}
	return 1200
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	// dur rounds a latency for reading, as summary.md does.
	"dur": func(d time.Duration) string { return d.Round(10 * time.Microsecond).String() },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font-family:sans-serif;margin:24px;color:#222;max-width:1160px}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
.summary{font-size:16px;padding:10px 14px;border-radius:4px}
.pass{background:#e8f5e9;border:1px solid #2e7d32}.fail{background:#ffebee;border:1px solid #c62828}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.r-pass{color:#2e7d32;font-weight:bold}.r-fail{color:#c62828;font-weight:bold}.r-unknown{color:#c62828;font-weight:bold}.r-skipped{color:#777;font-weight:bold}
code{font-size:12px}
</style></head><body>
<h1>{{.Title}}</h1>
<p class="summary {{if .Passed}}pass{{else}}fail{{end}}">{{.Summary}}</p>
<h2>Verdicts</h2>
<table><tr><th>checker</th><th>result</th><th>summary</th></tr>
{{range .Verdicts}}<tr><td>{{.Checker}}</td><td class="r-{{.Result}}">{{.Result}}</td><td>{{.Summary}}{{if .Problems}}<ul>{{range .Problems}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}{{range .Artifacts}}<br>see <a href="{{.}}">{{.}}</a>{{end}}</td></tr>
{{end}}</table>
<h2>Timeline</h2>
<p>Top: fault windows per replica (partitions and network faults span every replica they involve). Middle: operations started per second, by outcome. Bottom: latency of each operation (log scale), by outcome.</p>
{{.Timeline}}
<h2>Operations</h2>
<p>{{.Stats.Total}} operations on {{.Stats.Keys}} keys (final reads not counted); successful: p50 {{dur .Stats.P50}}, p99 {{dur .Stats.P99}}, max {{dur .Stats.Max}}.</p>
<table><tr><th>op</th><th>ok</th><th>fail</th><th>unknown</th></tr>
{{range .Kinds}}<tr><td>{{.Kind}}</td><td>{{.OK}}</td><td>{{.Fail}}</td><td>{{.Unknown}}</td></tr>{{end}}
</table>
{{if .Proxy}}<h2>Proxy traffic</h2>
<p>{{.PStats.Requests}} TCP requests through {{.PStats.Callers}} caller proxies to the echo service behind {{.PStats.Callees}} callee proxies (kuma-dp on the host's loopback; a new connection per request, the payload echoed back exactly within {{.PStats.Timeout}}): {{.PStats.OK}} ok, {{.PStats.Failed}} failed; successful: p50 {{dur .PStats.P50}}, p99 {{dur .PStats.P99}}, max {{dur .PStats.Max}}. The lanes under the replicas in the timeline: requests per second (green: all ok, red: some failed), then each proxy's connection as its admin /status reported it every {{.PStats.PollEvery}} (coloured by replica; red: connected to none; orange: configuration frozen).</p>
<table><tr><th>proxy</th><th>role</th><th>listens</th><th>requests</th><th>failed</th><th>p99</th><th>replicas, in order</th><th>moves</th><th>not connected (total / longest)</th><th>frozen</th><th>config versions</th><th>exit</th></tr>
{{range .Proxies}}<tr><td>{{.Name}}</td><td>{{.Role}}</td><td>{{.Listen}}</td><td>{{.Requests}}</td><td>{{.Failed}}</td><td>{{.P99}}</td><td>{{.Replicas}}</td><td>{{.Moves}}</td><td>{{.Disconnected}} / {{.LongestDisconnected}}</td><td>{{.Frozen}}</td><td>{{.Versions}}</td><td>{{.Exit}}</td></tr>
{{end}}</table>{{end}}
<h2>Faults</h2>
<p>{{.Counts}}. Decided writes: applied or rejected by the state machine (412, 404), that is committed and answered; the others got no leader or no answer. Longest gap: the longest stretch of a window without a decided write (how long writes were unavailable).</p>
<table><tr><th>nemesis</th><th>windows</th><th>mean length</th><th>writes decided</th><th>longest gap, mean</th><th>longest gap, max</th><th>errors</th></tr>
{{range .Nemeses}}<tr><td>{{.Nemesis}}</td><td>{{.Count}}</td><td>{{.MeanLength}}</td><td>{{.Decided}} of {{.Writes}}</td><td>{{.MeanGap}}</td><td>{{.MaxGap}}</td><td>{{.Errors}}</td></tr>
{{end}}</table>
<p></p>
{{if .Unavailable}}<p>Not injected in this run:</p><ul>{{range .Unavailable}}<li><b>{{index . 0}}</b>: {{index . 1}}</li>{{end}}</ul>{{end}}
<table><tr><th>#</th><th>nemesis</th><th>targets</th><th>detail</th><th>start</th><th>end</th><th>length</th><th>writes decided</th><th>longest gap</th><th>error</th></tr>
{{range $i, $f := .Faults}}<tr><td>{{$i}}</td><td>{{$f.Nemesis}}</td><td>{{$f.Targets}}</td><td>{{$f.Detail}}</td><td>{{$f.Start}}</td><td>{{$f.End}}</td><td>{{$f.Length}}</td><td>{{$f.Decided}}</td><td>{{$f.Gap}}</td><td>{{$f.Error}}</td></tr>
{{end}}</table>
<h2>Run</h2>
<table>{{range .Config}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
{{if .Notes}}<ul>{{range .Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p>Files in this directory: <code>history.jsonl</code> (every operation and fault), <code>verdicts.json</code>, <code>summary.md</code>, <code>recovery.json</code> (polls after healing), <code>states.json</code> (each replica's state digest), <code>plan.json</code> (the seeded schedule), <code>run.json</code>, <code>kuma-chaos.log</code>, <code>logs/</code> (each replica's log{{if .Proxy}}, and each proxy's as <code>dp-NAME.log</code>{{end}}){{if .Proxy}}, <code>proxy-traffic.jsonl</code> (every proxy request), <code>proxies.json</code> (the proxies' status changes and final status), <code>proxies/</code> (their Dataplanes){{end}}. <code>kuma-chaos check DIR</code> runs the checkers again.</p>
</body></html>
`))
