package check

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// ProxyRequest is one request a traffic workload sent through a data plane
// proxy (times in ns since the run start).
type ProxyRequest struct {
	Proxy    string `json:"proxy"`
	Invoke   int64  `json:"invoke"`
	Complete int64  `json:"complete"`
	OK       bool   `json:"ok"`
	Err      string `json:"error,omitempty"`
}

// ProxyEvent is a change in what a proxy reported on its admin /status,
// polled while the workload runs (time in ns since the run start): which
// replica it is connected to, whether its configuration is frozen (no
// replica reachable, the last good one still served), the config version.
// Not judged; the report draws them.
type ProxyEvent struct {
	At        int64  `json:"at"`
	Proxy     string `json:"proxy"`
	Connected bool   `json:"connected"`
	Replica   string `json:"replica,omitempty"`
	Frozen    bool   `json:"frozen,omitempty"`
	Version   string `json:"version,omitempty"`
	// Err: the admin endpoint did not answer (the other fields are zero).
	Err string `json:"error,omitempty"`
}

// ProxyTraffic checks that traffic through the proxies succeeded throughout
// every fault that leaves the data plane untouched: a control plane that is
// killed, paused or partitioned must not break connections between proxies
// that already have their configuration. Requests overlapping a fault marked
// DataPlane are not judged. Failures are reported per proxy as stretches of
// consecutive failed requests (a proxy that stopped serving fails every
// request until the end: one problem, not thousands). With no proxy traffic
// recorded (no proxy workload in this run) the verdict is Skipped.
func ProxyTraffic(reqs []ProxyRequest, faults []history.Fault) Verdict {
	v := Verdict{Checker: "proxy-traffic"}
	if len(reqs) == 0 {
		v.Result = Skipped
		v.Summary = "no proxy traffic in this run (--proxies 0)"
		return v
	}
	byProxy := map[string][]ProxyRequest{}
	var names []string
	for _, r := range reqs {
		if _, ok := byProxy[r.Proxy]; !ok {
			names = append(names, r.Proxy)
		}
		byProxy[r.Proxy] = append(byProxy[r.Proxy], r)
	}
	slices.Sort(names)
	var p problems
	judged, excused, failed := 0, 0, 0
	for _, name := range names {
		rs := byProxy[name]
		slices.SortStableFunc(rs, func(a, b ProxyRequest) int { return cmp.Compare(a.Invoke, b.Invoke) })
		var run []ProxyRequest // consecutive judged failures
		flush := func() {
			if len(run) == 0 {
				return
			}
			first, last := run[0], run[len(run)-1]
			if len(run) == 1 {
				p.addf("proxy %s: request at %s failed outside any data plane fault: %s", name, ms(first.Invoke), first.Err)
			} else {
				msg := fmt.Sprintf("proxy %s: %d requests in a row failed from %s to %s outside any data plane fault: %s", name, len(run), ms(first.Invoke), ms(last.Complete), first.Err)
				if last.Err != first.Err {
					msg += "; the last: " + last.Err
				}
				p.addf("%s", msg)
			}
			run = run[:0]
		}
		for _, r := range rs {
			touched := false
			for _, f := range faults {
				if f.DataPlane && r.Invoke <= f.End && r.Complete >= f.Start {
					touched = true
					break
				}
			}
			if touched {
				excused++
				continue
			}
			judged++
			if r.OK {
				flush()
				continue
			}
			failed++
			run = append(run, r)
		}
		flush()
	}
	if failed > 0 {
		v.Result = Fail
		stretches := "stretches"
		if p.count() == 1 {
			stretches = "stretch"
		}
		v.Summary = fmt.Sprintf("%d of %d requests judged failed, in %d %s (%d overlapped data plane faults)", failed, judged, p.count(), stretches, excused)
		v.Problems = p.out()
		return v
	}
	v.Result = Pass
	v.Summary = fmt.Sprintf("all %d requests outside data plane faults succeeded (%d overlapped data plane faults)", judged, excused)
	return v
}
