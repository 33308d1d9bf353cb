package report

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/check"
)

// ProxyInfo describes one kuma-dp of the proxy traffic workload.
type ProxyInfo struct {
	Name   string `json:"name"`
	Role   string `json:"role"`   // caller or callee
	Listen string `json:"listen"` // its outbound (caller) or inbound (callee)
	Exit   string `json:"exit,omitempty"`
}

// ProxyData is what the proxy traffic workload recorded.
type ProxyData struct {
	Proxies  []ProxyInfo
	Requests []check.ProxyRequest
	Events   []check.ProxyEvent
	// MonitorEnd is the time of the last status poll (ns since start).
	MonitorEnd int64
	// PollEvery is the status polling interval; Timeout a request's bound.
	PollEvery, Timeout time.Duration
}

// ProxyStats summarizes the proxy requests.
type ProxyStats struct {
	Requests, OK, Failed int
	Callers, Callees     int
	P50, P99, Max        time.Duration
	PollEvery, Timeout   time.Duration
}

// SummarizeProxy counts the requests and their latencies.
func SummarizeProxy(p *ProxyData) ProxyStats {
	s := ProxyStats{PollEvery: p.PollEvery, Timeout: p.Timeout}
	for _, px := range p.Proxies {
		if px.Role == "caller" {
			s.Callers++
		} else {
			s.Callees++
		}
	}
	var lat []time.Duration
	for _, r := range p.Requests {
		s.Requests++
		if r.OK {
			s.OK++
			lat = append(lat, time.Duration(r.Complete-r.Invoke))
		} else {
			s.Failed++
		}
	}
	s.P50, s.P99, s.Max = percentiles(lat)
	return s
}

func percentiles(lat []time.Duration) (p50, p99, maxLat time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return r(lat[len(lat)/2]), r(lat[len(lat)*99/100]), r(lat[len(lat)-1])
}

// ProxyRow is one proxy in the report.
type ProxyRow struct {
	Name, Role, Listen string
	Requests, Failed   int // requests sent through it (callers)
	P99                time.Duration
	// Replicas it was connected to, in order ("cp-1 → cp-3").
	Replicas string
	// Moves counts the times it connected to a replica after being
	// connected to another one or to none.
	Moves                             int
	Disconnected, LongestDisconnected time.Duration
	Frozen                            time.Duration
	Versions                          int // distinct config versions seen
	Exit                              string
}

// proxySegment is a stretch of time in which a proxy reported one state.
type proxySegment struct {
	start, end int64
	ev         check.ProxyEvent
}

// proxySegments turns the change events of one proxy into stretches that
// end at the next change (the last at MonitorEnd).
func proxySegments(p *ProxyData, name string) []proxySegment {
	var out []proxySegment
	for _, e := range p.Events {
		if e.Proxy != name {
			continue
		}
		if n := len(out); n > 0 {
			out[n-1].end = e.At
		}
		out = append(out, proxySegment{start: e.At, end: e.At, ev: e})
	}
	if n := len(out); n > 0 {
		out[n-1].end = max(out[n-1].start, p.MonitorEnd)
	}
	return out
}

// ProxyRows summarizes every proxy.
func ProxyRows(p *ProxyData, replicas []string) []ProxyRow {
	var rows []ProxyRow
	for _, px := range p.Proxies {
		row := ProxyRow{Name: px.Name, Role: px.Role, Listen: px.Listen, Exit: px.Exit}
		var lat []time.Duration
		for _, r := range p.Requests {
			if r.Proxy != px.Name {
				continue
			}
			row.Requests++
			if !r.OK {
				row.Failed++
			} else {
				lat = append(lat, time.Duration(r.Complete-r.Invoke))
			}
		}
		_, row.P99, _ = percentiles(lat)
		var seq []string
		versions := map[string]bool{}
		prevReplica := ""
		for _, sg := range proxySegments(p, px.Name) {
			d := time.Duration(sg.end - sg.start)
			e := sg.ev
			if e.Version != "" {
				versions[e.Version] = true
			}
			if e.Frozen {
				row.Frozen += d
			}
			if !e.Connected {
				row.Disconnected += d
				row.LongestDisconnected = max(row.LongestDisconnected, d)
				prevReplica = ""
				continue
			}
			if e.Replica != prevReplica {
				if prevReplica != "" || len(seq) > 0 {
					row.Moves++
				}
				seq = append(seq, e.Replica)
				prevReplica = e.Replica
			}
		}
		row.Disconnected = row.Disconnected.Round(10 * time.Millisecond)
		row.LongestDisconnected = row.LongestDisconnected.Round(10 * time.Millisecond)
		row.Frozen = row.Frozen.Round(10 * time.Millisecond)
		row.Versions = len(versions)
		if len(seq) > 12 {
			seq = slices.Concat(seq[:5], []string{fmt.Sprintf("… %d more …", len(seq)-10)}, seq[len(seq)-5:])
		}
		row.Replicas = strings.Join(seq, " → ")
		if row.Replicas == "" {
			row.Replicas = "none"
		}
		rows = append(rows, row)
	}
	return rows
}

var replicaColors = []string{"#90caf9", "#a5d6a7", "#ce93d8", "#fff59d", "#bcaaa4"}

const (
	colorDisconnected = "#e53935"
	colorFrozen       = "#ffa726"
)

// proxyTimeline draws, from y down, a lane of proxy requests per second
// and one lane per proxy showing its connection; it returns the lanes drawn.
func proxyTimeline(b *strings.Builder, d *Data, y float64, x func(int64) float64, end int64, left, right, laneH float64) int {
	p := d.Proxy
	fmt.Fprintf(b, `<text x="%.0f" y="%.1f" text-anchor="end">proxy traffic</text>`, left-6, y+12)
	buckets := int(end/1e9) + 1
	type bucket struct{ ok, failed int }
	counts := make([]bucket, buckets)
	for _, r := range p.Requests {
		i := min(int(r.Invoke/1e9), buckets-1)
		if r.OK {
			counts[i].ok++
		} else {
			counts[i].failed++
		}
	}
	for i, c := range counts {
		if c.ok+c.failed == 0 {
			continue
		}
		color := outcomeColor["ok"]
		if c.failed > 0 {
			color = colorDisconnected
		}
		x0, x1 := x(int64(i)*1e9), x(int64(i+1)*1e9)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%ds: %d ok, %d failed</title></rect>`,
			x0, y+3, math.Max(x1-x0-0.3, 0.5), laneH-6, color, i, c.ok, c.failed)
	}
	for i, px := range p.Proxies {
		ly := y + laneH*float64(i+1)
		fmt.Fprintf(b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`, left-6, ly+12, template.HTMLEscapeString(px.Name))
		fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, left, right, ly+laneH/2, ly+laneH/2)
		for _, sg := range proxySegments(p, px.Name) {
			e := sg.ev
			color, what := colorDisconnected, "connected to no replica"
			switch {
			case e.Err != "":
				what = "admin endpoint did not answer: " + e.Err
			case e.Connected:
				ci := slices.Index(d.Replicas, e.Replica)
				color = replicaColors[max(ci, 0)%len(replicaColors)]
				what = "connected to " + e.Replica
			}
			if e.Frozen {
				color, what = colorFrozen, what+", configuration frozen"
			}
			w := math.Max(x(sg.end)-x(sg.start), 1)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s, config %s (%s–%s)</title></rect>`,
				x(sg.start), ly+4, w, laneH-8, color, template.HTMLEscapeString(px.Name), template.HTMLEscapeString(what),
				template.HTMLEscapeString(e.Version), secs(sg.start), secs(sg.end))
		}
	}
	return 1 + len(p.Proxies)
}
