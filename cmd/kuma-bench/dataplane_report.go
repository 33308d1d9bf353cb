package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

func dataplaneReport(cfg *config, m machine, at time.Time, r *dpResults) string {
	var b strings.Builder
	b.WriteString("## " + sectionTitle("dataplane") + "\n\n")
	b.WriteString(provenance(cfg.cmdline, at, m, cfg.quick))
	if r.DPVersion != "" {
		fmt.Fprintf(&b, "- kuma-dp: %s (built-in proxy)\n", r.DPVersion)
	}
	if r.LoadBefore != "" {
		fmt.Fprintf(&b, "- Load average when the run started: %s (1, 5, 15 min); when it ended: %s\n", r.LoadBefore, r.LoadAfter)
	}
	fmt.Fprintf(&b, "\nMethod: one kuma-cp replica (it hands out the config and carries no traffic, so one is enough), "+
		"two kuma-dp processes with the built-in L4 proxy (`--proxy builtin`) and the app, all on 127.0.0.1. "+
		"The app is a separate process (a hidden subcommand of kuma-bench: per connection, an echo or a sink that "+
		"answers with the byte count), so that its CPU is not the client's. *Proxied*: client → caller kuma-dp "+
		"(outbound listener) → callee kuma-dp (inbound listener) → app, the two hops of a Kuma mesh; *direct*: "+
		"client → app. Each measure runs direct, then proxied, for %s each. Bulk transfer: 64 KiB writes until "+
		"the time is up, then a half-close; MB/s (10^6 bytes) is what the app confirmed over the time to its last "+
		"count. Requests: 64 B, the echo read back in full and compared; %d unmeasured requests first; "+
		"nearest-rank percentiles; on a new connection the latency includes the dial. RSS is VmRSS sampled every "+
		"%s during the load; CPU is utime + stime from /proc/PID/stat, counted (like the wall time) from the end "+
		"of a phase's warm-up. Setup (kuma-cp, app, both proxies ready, "+
		"a first request through them) took %s.\n\n",
		r.Duration, dpWarmUp, dpRSSInterval, r.Setup.Round(100*time.Millisecond))

	b.WriteString(table([]string{"measure", "direct", "proxied", "proxied − direct", "proxied / direct"}, dpTrafficRows(r)))
	b.WriteString("\n")
	b.WriteString(table([]string{"process", "RSS idle", "RSS peak under load", "RSS after load", "VmHWM", "CPU s, direct phases", "CPU s, proxied phases"},
		dpProcessRows(r)))
	b.WriteString("\nCPU used during each phase, in cores (CPU seconds / wall seconds; the machine has " +
		fmt.Sprint(m.NProc) + "):\n\n")
	b.WriteString(table([]string{"measure", "path", "wall", "caller", "callee", "app", "kuma-cp", "client", "sum"}, dpCPURows(r)))
	b.WriteString("\n")
	for _, line := range dpInterpretation(r, m) {
		b.WriteString("- " + line + "\n")
	}
	return b.String()
}

func dpTrafficRows(r *dpResults) [][]string {
	var rows [][]string
	tput := func(key, label string) {
		d, p := r.phase(key, "direct"), r.phase(key, "proxied")
		if d == nil || p == nil || d.Tput == nil || p.Tput == nil {
			return
		}
		rows = append(rows, []string{label,
			fmt.Sprintf("%.0f MB/s", d.Tput.MBps()), fmt.Sprintf("%.0f MB/s", p.Tput.MBps()),
			fmtSigned(p.Tput.MBps()-d.Tput.MBps(), " MB/s"), fmtRatio(p.Tput.MBps(), d.Tput.MBps())})
	}
	lat := func(key, label string, ps ...float64) {
		d, p := r.phase(key, "direct"), r.phase(key, "proxied")
		if d == nil || p == nil || d.Lat == nil || p.Lat == nil {
			return
		}
		for _, q := range ps {
			dv, pv := percentile(d.Lat.Latencies, q), percentile(p.Lat.Latencies, q)
			rows = append(rows, []string{fmt.Sprintf("%s, %s", label, pctName(q)),
				fmtDur(dv), fmtDur(pv), fmtDelta(pv - dv), fmtRatio(float64(pv), float64(dv))})
		}
	}
	tput("tput-1", "throughput, 1 connection")
	tput("tput-8", fmt.Sprintf("throughput, %d connections", dpThroughputConns[1]))
	lat("persistent", "round trip, persistent connection", 50, 99, 99.9)
	lat("newconn", "request on a new connection", 50, 99, 99.9)
	if d, p := r.phase("rps", "direct"), r.phase("rps", "proxied"); d != nil && p != nil && d.Lat != nil && p.Lat != nil {
		rows = append(rows, []string{fmt.Sprintf("new connections, %d concurrent: requests/s", dpRPSConcurrency),
			fmt.Sprintf("%.0f", d.Lat.rate()), fmt.Sprintf("%.0f", p.Lat.rate()),
			fmtSigned(p.Lat.rate()-d.Lat.rate(), ""), fmtRatio(p.Lat.rate(), d.Lat.rate())})
		lat("rps", fmt.Sprintf("new connections, %d concurrent", dpRPSConcurrency), 50, 99)
	}
	errs := func(path string) string {
		var parts []string
		total := 0
		for _, ph := range r.Phases {
			if ph.Path != path {
				continue
			}
			var m map[string]int
			switch {
			case ph.Tput != nil:
				m = ph.Tput.Errors
			case ph.Lat != nil:
				m = ph.Lat.Errors
			}
			for k, c := range m {
				total += c
				parts = append(parts, fmt.Sprintf("%d× %s (%s)", c, k, ph.Measure))
			}
		}
		slices.Sort(parts)
		if total == 0 {
			return "0"
		}
		return fmt.Sprintf("%d: %s", total, strings.Join(parts, "; "))
	}
	samples := func(path string) string {
		n := 0
		for _, ph := range r.Phases {
			if ph.Path == path && ph.Lat != nil {
				n += len(ph.Lat.Latencies)
			}
		}
		return fmt.Sprint(n)
	}
	rows = append(rows,
		[]string{"requests measured (all request phases)", samples("direct"), samples("proxied"), "", ""},
		[]string{"errors", errs("direct"), errs("proxied"), "", ""})
	return rows
}

func dpProcessRows(r *dpResults) [][]string {
	var rows [][]string
	mib := func(m map[string]int64, name string) string {
		v, ok := m[name]
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20))
	}
	for _, name := range dpProcs {
		rows = append(rows, []string{name, mib(r.RSSIdle, name), mib(r.RSSPeak, name), mib(r.RSSAfter, name), mib(r.HWM, name),
			fmt.Sprintf("%.2f", r.cpuTotal(name, "direct").Seconds()), fmt.Sprintf("%.2f", r.cpuTotal(name, "proxied").Seconds())})
	}
	return rows
}

func (r *dpResults) cpuTotal(name, path string) time.Duration {
	var t time.Duration
	for _, ph := range r.Phases {
		if ph.Path == path {
			t += ph.CPU[name]
		}
	}
	return t
}

func dpCPURows(r *dpResults) [][]string {
	var rows [][]string
	for _, ph := range r.Phases {
		row := []string{dpMeasureTitle(ph.Measure), ph.Path, fmt.Sprintf("%.2f s", ph.Wall.Seconds())}
		var sum float64
		for _, name := range dpProcs {
			c := ph.cores(name)
			sum += c
			row = append(row, fmt.Sprintf("%.2f", c))
		}
		rows = append(rows, append(row, fmt.Sprintf("%.2f", sum)))
	}
	return rows
}

// cores is the CPU a process used during the phase, in cores.
func (ph *dpPhase) cores(name string) float64 {
	if ph.Wall <= 0 {
		return 0
	}
	return ph.CPU[name].Seconds() / ph.Wall.Seconds()
}

func dpMeasureTitle(key string) string {
	for _, m := range dpMeasures {
		if m.Key == key {
			return m.Title
		}
	}
	return key
}

// dpInterpretation is what the figures mean, computed from them.
func dpInterpretation(r *dpResults, m machine) []string {
	var lines []string
	t1d, t1p := r.phase("tput-1", "direct"), r.phase("tput-1", "proxied")
	t8d, t8p := r.phase("tput-8", "direct"), r.phase("tput-8", "proxied")
	if t1d != nil && t1p != nil && t8d != nil && t8p != nil {
		line := fmt.Sprintf("**Throughput**: through both proxies bulk transfer reaches %.0f %% of the direct rate "+
			"on one connection and %.0f %% on %d. Each proxy reads every byte into user space and writes it out again "+
			"(32 KiB at a time), so a byte crosses loopback three times instead of once. During the proxied %d-connection phase "+
			"the processes used %.2f of the %d cores (%.2f in the two kuma-dp, %.2f in the client, %.2f in the app)",
			100*t1p.Tput.MBps()/t1d.Tput.MBps(), 100*t8p.Tput.MBps()/t8d.Tput.MBps(), t8p.Tput.Conns, t8p.Tput.Conns,
			t8p.coresSum(), m.NProc, t8p.cores(procCaller)+t8p.cores(procCallee), t8p.cores(procClient), t8p.cores(procApp))
		if r.starved(m) {
			line += ": other work on the machine had the rest, so the copy was short of CPU."
		} else {
			line += ": the copy is CPU-bound, and client, proxies and app share the same cores, so this is the proxy's " +
				"cost, not its ceiling on a machine with cores to spare."
		}
		lines = append(lines, line)
	}
	if d, p := r.phase("persistent", "direct"), r.phase("persistent", "proxied"); d != nil && p != nil {
		lines = append(lines, fmt.Sprintf("**Added latency, established connection**: %s at p50, %s at p99 per 64 B round trip: "+
			"four more loopback hops (two each way), each a goroutine wake-up, a read and a write in a proxy.",
			fmtDelta(percentile(p.Lat.Latencies, 50)-percentile(d.Lat.Latencies, 50)),
			fmtDelta(percentile(p.Lat.Latencies, 99)-percentile(d.Lat.Latencies, 99))))
	}
	if d, p := r.phase("newconn", "direct"), r.phase("newconn", "proxied"); d != nil && p != nil {
		line := fmt.Sprintf("**Added latency, new connection**: %s at p50, %s at p99: before the request moves, the caller accepts "+
			"and dials the callee, which accepts and dials the app (three TCP handshakes instead of one, and two goroutines "+
			"per connection in each proxy).",
			fmtDelta(percentile(p.Lat.Latencies, 50)-percentile(d.Lat.Latencies, 50)),
			fmtDelta(percentile(p.Lat.Latencies, 99)-percentile(d.Lat.Latencies, 99)))
		if rd, rp := r.phase("rps", "direct"), r.phase("rps", "proxied"); rd != nil && rp != nil && len(rp.Lat.Latencies) > 0 && len(rd.Lat.Latencies) > 0 {
			per := func(ph *dpPhase, name string) string {
				return fmtDur(ph.CPU[name] / time.Duration(len(ph.Lat.Latencies)))
			}
			line += fmt.Sprintf(" At %d concurrent, %.0f requests/s proxied vs %.0f direct with %.2f of %d cores busy: "+
				"per proxied request the caller used %s of CPU and the callee %s (each accepts one socket and dials "+
				"another), where the app used %s per direct request (one socket) and the client %s.",
				dpRPSConcurrency, rp.Lat.rate(), rd.Lat.rate(), rp.coresSum(), m.NProc,
				per(rp, procCaller), per(rp, procCallee), per(rd, procApp), per(rd, procClient))
		}
		lines = append(lines, line)
	}
	mib := func(m map[string]int64, name string) string { return fmt.Sprintf("%.0f", float64(m[name])/(1<<20)) }
	lines = append(lines, fmt.Sprintf("**Memory**: kuma-dp caller / callee RSS %s / %s MiB at idle (after startup, config applied), "+
		"peak %s / %s MiB under load, %s / %s MiB right after it (the Go heap is returned to the OS lazily). "+
		"While the traffic went direct, the kuma-dp processes were idle: their CPU over those phases is what they cost at rest. "+
		"The control plane is not on the data path: kuma-cp used %.2f CPU s during all the proxied phases together.",
		mib(r.RSSIdle, procCaller), mib(r.RSSIdle, procCallee), mib(r.RSSPeak, procCaller), mib(r.RSSPeak, procCallee),
		mib(r.RSSAfter, procCaller), mib(r.RSSAfter, procCallee), r.cpuTotal(procCP, "proxied").Seconds()))
	if s := dpListenerLine(r); s != "" {
		lines = append(lines, s)
	}
	if r.LoadBefore != "" {
		if r.starved(m) {
			lines = append(lines, fmt.Sprintf("**A loaded machine**: load average %s when the run started and %s when it ended "+
				"(1, 5, 15 min, on %d CPUs); the benchmark's processes got at most %.2f of the %d cores, other work the rest. "+
				"Every rate here is lower and every latency higher than on an idle machine, proxied more than direct: a "+
				"proxied request needs three processes scheduled where a direct one needs one, and each waits for a core. "+
				"Compare the proxied / direct ratios of runs under a similar load, not absolute figures.",
				r.LoadBefore, r.LoadAfter, m.NProc, r.maxCores(), m.NProc))
		} else {
			lines = append(lines, fmt.Sprintf("Load average %s when the run started (1, 5, 15 min, on %d CPUs); the benchmark's "+
				"processes used up to %.2f of the %d cores.", r.LoadBefore, m.NProc, r.maxCores(), m.NProc))
		}
	}
	return lines
}

// dpListenerLine says how many connections each proxy's listener carried,
// from kuma-dp's own /status: the proof the proxied phases went through it.
func dpListenerLine(r *dpResults) string {
	var parts []string
	for _, name := range []string{procCaller, procCallee} {
		for _, l := range r.Listeners[name] {
			if l.Total == 0 {
				continue
			}
			part := fmt.Sprintf("%s %s listener `%s`: %d connections, %d failed, %.1f GB in",
				name, l.Direction, l.Name, l.Total, l.Failed, float64(l.BytesIn)/1e9)
			if l.Active != 0 {
				part += fmt.Sprintf(", **%d still open %s after the load**", l.Active, dpSettle)
			}
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "kuma-dp's /status after the load (the proof the proxied phases went through both): " + strings.Join(parts, "; ") + "."
}

// maxCores is the most CPU the benchmark's processes used together in a phase.
func (r *dpResults) maxCores() float64 {
	var most float64
	for _, ph := range r.Phases {
		most = max(most, ph.coresSum())
	}
	return most
}

// starved reports whether the benchmark never got most of the machine:
// other work took CPU from it.
func (r *dpResults) starved(m machine) bool {
	return m.NProc > 0 && len(r.Phases) > 0 && r.maxCores() < 0.85*float64(m.NProc)
}

func (ph *dpPhase) coresSum() float64 {
	var s float64
	for _, name := range dpProcs {
		s += ph.cores(name)
	}
	return s
}

func pctName(q float64) string {
	return "p" + strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", q), "0"), ".")
}

func fmtRatio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// fmtSigned renders a rounded difference with its sign and unit.
func fmtSigned(v float64, unit string) string {
	if v < 0 {
		return fmt.Sprintf("−%.0f%s", -v, unit)
	}
	return fmt.Sprintf("+%.0f%s", v, unit)
}

// fmtDelta renders a latency difference with its sign.
func fmtDelta(d time.Duration) string {
	if d < 0 {
		return "−" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}
