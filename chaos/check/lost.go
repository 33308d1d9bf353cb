package check

import (
	"fmt"
	"slices"

	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// finalState is what the final reads of a key agree on.
type finalState struct {
	found   bool
	value   string
	version uint64
}

func (f finalState) String() string {
	if !f.found {
		return "absent"
	}
	return fmt.Sprintf("%s@%d", f.value, f.version)
}

// finalStates groups the distinct states the successful final reads saw,
// by key. Final reads done after healing, with no writer left, must all
// agree; disagreement is a problem of its own, and every state seen is
// judged.
func finalStates(ops []history.Op, p *problems) map[string][]finalState {
	out := map[string][]finalState{}
	seen := map[string]string{} // key -> replica of the first final read
	for _, op := range ops {
		if !op.Final || op.Kind != history.Read || op.Outcome != history.OK {
			continue
		}
		st := finalState{found: op.Found, value: op.Value, version: op.Version}
		prev, ok := out[op.Key]
		switch {
		case !ok:
			seen[op.Key] = op.Replica
		case slices.Contains(prev, st):
			continue
		default:
			p.addf("key %s: final reads disagree: %s on %s, %s on %s", op.Key, prev[0], seen[op.Key], st, op.Replica)
		}
		out[op.Key] = append(prev, st)
	}
	return out
}

// LostWrites checks, from the final reads done after healing, that no
// acknowledged write was lost: for every key, the final state is the value of
// the last acknowledged write or a later one (a later version, or absent
// after a delete that may have followed it), every acknowledged delete is
// followed by absence or a write that may have followed it, and every value
// read was written by someone.
func LostWrites(ops []history.Op) Verdict {
	v := Verdict{Checker: "no-lost-writes"}
	var p problems
	finals := finalStates(ops, &p)

	writesByValue := map[string]*history.Op{}
	byKey := map[string][]*history.Op{}
	for i := range ops {
		op := &ops[i]
		if op.Final || !op.IsWrite() {
			continue
		}
		byKey[op.Key] = append(byKey[op.Key], op)
		if op.Kind != history.Delete && op.Outcome != history.Fail {
			writesByValue[op.Key+"\x00"+op.Value] = op
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	acked, missing := 0, 0
	for _, k := range keys {
		kops := byKey[k]
		states, ok := finals[k]
		if !ok {
			missing++
			continue
		}
		for i, fin := range states {
			if n := checkFinal(k, fin, kops, writesByValue, &p); i == 0 {
				acked += n
			}
		}
	}
	switch {
	case p.count() > 0:
		v.Result = Fail
		v.Summary = fmt.Sprintf("%d acknowledged writes and deletes on %d keys: %d violations", acked, len(keys), p.count())
		v.Problems = p.out()
	case len(keys) == 0:
		v.Result = Unknown
		v.Summary = "no write to check"
	case missing > 0:
		v.Result = Unknown
		v.Summary = fmt.Sprintf("%d of %d keys have no successful final read: cannot tell whether their writes survived", missing, len(keys))
	default:
		v.Result = Pass
		v.Summary = fmt.Sprintf("all %d acknowledged writes and deletes on %d keys survived healing", acked, len(keys))
	}
	return v
}

// checkFinal judges one final state of key k against its writes and
// returns how many acknowledged writes and deletes it judged.
func checkFinal(k string, fin finalState, kops []*history.Op, writesByValue map[string]*history.Op, p *problems) int {
	acked := 0
	var producer *history.Op
	if fin.found {
		producer = writesByValue[k+"\x00"+fin.value]
		switch {
		case producer == nil:
			p.addf("key %s: final value %s was never written by any client", k, fin)
		case producer.Outcome == history.OK && producer.Version != fin.version:
			p.addf("key %s: final value %s, but write #%d of that value was acknowledged with version %d", k, fin, producer.ID, producer.Version)
		}
	}
	// mayFollow reports whether op b may have taken effect after op a
	// was invoked (b did not complete before a began).
	mayFollow := func(b, a *history.Op) bool {
		return b.Outcome == history.Unknown || b.Complete >= a.Invoke
	}
	for _, w := range kops {
		if w.Outcome != history.OK {
			continue
		}
		acked++
		if w.Kind == history.Delete {
			if fin.found && producer != nil && !mayFollow(producer, w) {
				p.addf("key %s: delete #%d acknowledged at %s on %s is lost: the final state %s was written by #%d, which completed at %s, before the delete began",
					k, w.ID, ms(w.Complete), w.Replica, fin, producer.ID, ms(producer.Complete))
			}
			continue
		}
		if fin.found {
			if fin.version < w.Version {
				p.addf("key %s: write #%d of %s@%d acknowledged at %s by %s is lost: final state is %s",
					k, w.ID, w.Value, w.Version, ms(w.Complete), w.Replica, fin)
			}
			continue
		}
		deletedLater := false
		for _, d := range kops {
			if d.Kind == history.Delete && d.Outcome != history.Fail && mayFollow(d, w) {
				deletedLater = true
				break
			}
		}
		if !deletedLater {
			p.addf("key %s: write #%d of %s@%d acknowledged at %s by %s is lost: the key is absent and no delete may have followed it",
				k, w.ID, w.Value, w.Version, ms(w.Complete), w.Replica)
		}
	}
	return acked
}
