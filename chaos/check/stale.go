package check

import (
	"fmt"

	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// StaleReads checks every successful read, plain or consistent, against
// what the contract promises even for reads that need not be linearizable:
//   - the value was written by some client, by a write invoked before the
//     read returned, and the version read is the one that write got;
//   - read-your-writes per replica: once replica X has acknowledged a write
//     of version V, a later read on X (same incarnation: a restarted replica
//     may replay its log) returns version V or later, or absence after a
//     delete that may have followed the write.
func StaleReads(ops []history.Op) Verdict {
	v := Verdict{Checker: "stale-reads"}
	var p problems
	writes := map[string]*history.Op{} // key, value -> write
	type replicaKey struct {
		replica     string
		incarnation int
		key         string
	}
	ackedOn := map[replicaKey][]*history.Op{}
	deletes := map[string][]*history.Op{}
	for i := range ops {
		op := &ops[i]
		if !op.IsWrite() || op.Outcome == history.Fail {
			continue
		}
		if op.Kind == history.Delete {
			deletes[op.Key] = append(deletes[op.Key], op)
			continue
		}
		writes[op.Key+"\x00"+op.Value] = op
		if op.Outcome == history.OK && op.Replica != "" {
			rk := replicaKey{op.Replica, op.Incarnation, op.Key}
			ackedOn[rk] = append(ackedOn[rk], op)
		}
	}
	reads := 0
	for i := range ops {
		r := &ops[i]
		if r.Kind != history.Read || r.Outcome != history.OK {
			continue
		}
		reads++
		if r.Found {
			w := writes[r.Key+"\x00"+r.Value]
			switch {
			case w == nil:
				p.addf("key %s: read #%d on %s returned %s@%d, a value no client wrote", r.Key, r.ID, r.Replica, r.Value, r.Version)
				continue
			case w.Invoke > r.Complete:
				p.addf("key %s: read #%d on %s returned %s before write #%d of it was invoked", r.Key, r.ID, r.Replica, r.Value, w.ID)
			case w.Outcome == history.OK && w.Version != r.Version:
				p.addf("key %s: read #%d on %s returned %s@%d, but write #%d of that value got version %d", r.Key, r.ID, r.Replica, r.Value, r.Version, w.ID, w.Version)
			}
		}
		for _, w := range ackedOn[replicaKey{r.Replica, r.Incarnation, r.Key}] {
			if w.Complete >= r.Invoke {
				continue
			}
			if r.Found {
				if r.Version < w.Version {
					kind := "plain"
					if r.Consistent {
						kind = "consistent"
					}
					p.addf("key %s: stale %s read #%d on %s at %s returned %s@%d, but %s had acknowledged write #%d of version %d at %s",
						r.Key, kind, r.ID, r.Replica, ms(r.Invoke), r.Value, r.Version, w.Replica, w.ID, w.Version, ms(w.Complete))
				}
				continue
			}
			deleted := false
			for _, d := range deletes[r.Key] {
				if d.Outcome == history.Unknown || d.Complete >= w.Invoke {
					deleted = true
					break
				}
			}
			if !deleted {
				p.addf("key %s: read #%d on %s at %s found nothing, but %s had acknowledged write #%d of version %d at %s and no delete may have followed it",
					r.Key, r.ID, r.Replica, ms(r.Invoke), w.Replica, w.ID, w.Version, ms(w.Complete))
			}
		}
	}
	switch {
	case p.count() > 0:
		v.Result = Fail
		v.Summary = fmt.Sprintf("%d successful reads: %d violations", reads, p.count())
		v.Problems = p.out()
	case reads == 0:
		v.Result = Unknown
		v.Summary = "no successful read to check"
	default:
		v.Result = Pass
		v.Summary = fmt.Sprintf("%d successful reads returned written values, none older than a write their replica had acknowledged", reads)
	}
	return v
}
