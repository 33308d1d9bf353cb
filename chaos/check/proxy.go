package check

import (
	"fmt"

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
// DataPlane are not judged. With no proxy traffic recorded (no proxy workload
// in this run) the verdict is Skipped.
func ProxyTraffic(reqs []ProxyRequest, faults []history.Fault) Verdict {
	v := Verdict{Checker: "proxy-traffic"}
	if len(reqs) == 0 {
		v.Result = Skipped
		v.Summary = "no proxy traffic in this run (the proxy workload needs kuma-dp)"
		return v
	}
	var p problems
	judged, excused := 0, 0
	for _, r := range reqs {
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
		if !r.OK {
			p.addf("proxy %s: request at %s failed outside any data plane fault: %s", r.Proxy, ms(r.Invoke), r.Err)
		}
	}
	if p.count() > 0 {
		v.Result = Fail
		v.Summary = fmt.Sprintf("%d of %d requests judged failed (%d overlapped data plane faults)", p.count(), judged, excused)
		v.Problems = p.out()
		return v
	}
	v.Result = Pass
	v.Summary = fmt.Sprintf("all %d requests outside data plane faults succeeded (%d overlapped data plane faults)", judged, excused)
	return v
}
