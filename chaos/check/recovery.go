package check

import (
	"fmt"
	"slices"
	"time"
)

// View is what one replica said about the cluster in one poll.
type View struct {
	Replica string `json:"replica"`
	Err     string `json:"error,omitempty"` // no answer (or not ready: the reason)
	Ready   bool   `json:"ready"`
	Leader  string `json:"leader"`
	Role    string `json:"role"` // this replica's own role
	// Healthy lists the replicas this one sees as healthy voters.
	Healthy []string `json:"healthy"`
}

// Poll is one round of asking every replica, at At (ns since the run start).
type Poll struct {
	At    int64  `json:"at"`
	Views []View `json:"views"`
}

// Recovery is what the runner observed after healing every fault.
type Recovery struct {
	HealedAt int64         `json:"healedAt"`
	Bound    time.Duration `json:"bound"`
	Replicas []string      `json:"replicas"` // every replica of the cluster
	Polls    []Poll        `json:"polls"`
}

// recovered reports whether one poll shows a recovered cluster, or why not.
func (r *Recovery) recovered(p Poll) (bool, string) {
	if len(p.Views) < len(r.Replicas) {
		return false, fmt.Sprintf("%d of %d replicas answered", len(p.Views), len(r.Replicas))
	}
	leader := ""
	leaders := 0
	for _, v := range p.Views {
		if v.Err != "" {
			return false, v.Replica + ": " + v.Err
		}
		if !v.Ready {
			return false, v.Replica + " is not ready"
		}
		if v.Leader == "" {
			return false, v.Replica + " sees no leader"
		}
		if leader != "" && v.Leader != leader {
			return false, fmt.Sprintf("%s sees leader %s, others %s", v.Replica, v.Leader, leader)
		}
		leader = v.Leader
		if v.Role == "leader" {
			leaders++
		}
		for _, want := range r.Replicas {
			if !slices.Contains(v.Healthy, want) {
				return false, fmt.Sprintf("%s does not see %s healthy", v.Replica, want)
			}
		}
	}
	if !slices.Contains(r.Replicas, leader) {
		return false, fmt.Sprintf("leader %q is not a replica of the cluster", leader)
	}
	if leaders != 1 {
		return false, fmt.Sprintf("%d replicas say they are leader", leaders)
	}
	return true, ""
}

// Recovered checks that after healing the cluster returns, within the bound,
// to exactly one leader that every replica names, every replica ready and
// seen healthy by all, and stays so for the remaining polls.
func Recovered(r Recovery) Verdict {
	v := Verdict{Checker: "recovery"}
	if len(r.Polls) == 0 {
		v.Result = Unknown
		v.Summary = "the cluster was not polled after healing"
		return v
	}
	first := -1
	last := ""
	for i, p := range r.Polls {
		ok, why := r.recovered(p)
		if ok {
			first = i
			break
		}
		last = why
	}
	if first < 0 {
		v.Result = Fail
		at := r.Polls[len(r.Polls)-1].At
		v.Summary = fmt.Sprintf("not recovered %s after healing (bound %s)", time.Duration(at-r.HealedAt).Round(time.Millisecond), r.Bound)
		v.Problems = []string{"last poll: " + last}
		return v
	}
	took := time.Duration(r.Polls[first].At - r.HealedAt)
	var p problems
	if took > r.Bound {
		p.addf("recovery took %s, more than the bound of %s", took.Round(time.Millisecond), r.Bound)
	}
	for _, poll := range r.Polls[first+1:] {
		if ok, why := r.recovered(poll); !ok {
			p.addf("at %s, after recovering, the cluster flapped: %s", ms(poll.At), why)
		}
	}
	leader := r.Polls[first].Views[0].Leader
	if p.count() > 0 {
		v.Result = Fail
		v.Summary = fmt.Sprintf("recovered after %s (bound %s), with problems", took.Round(time.Millisecond), r.Bound)
		v.Problems = p.out()
		return v
	}
	v.Result = Pass
	v.Summary = fmt.Sprintf("one leader (%s) and all %d replicas ready and healthy %s after healing (bound %s), stable over %d more polls",
		leader, len(r.Replicas), took.Round(time.Millisecond), r.Bound, len(r.Polls)-first-1)
	return v
}
