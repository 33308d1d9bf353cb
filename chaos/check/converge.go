package check

import (
	"fmt"
	"slices"
	"strings"
)

// ReplicaState is one replica's full state as read after healing.
type ReplicaState struct {
	Replica string `json:"replica"`
	// Index is the replica's applied index when the state was read.
	Index uint64 `json:"index"`
	// Digest identifies the whole state; equal digests mean equal states.
	Digest string `json:"digest"`
	// Resources maps each resource ("Type/mesh/name") to a digest of its
	// content, for naming differences when digests differ. May be nil.
	Resources map[string]string `json:"resources,omitempty"`
	// Err is set when the state could not be read.
	Err string `json:"error,omitempty"`
}

// Converged checks that every replica holds an identical state: the same
// digest at the same applied index.
func Converged(states []ReplicaState) Verdict {
	v := Verdict{Checker: "convergence"}
	var p problems
	if len(states) == 0 {
		v.Result = Unknown
		v.Summary = "no replica state was collected"
		return v
	}
	var ok []ReplicaState
	for _, s := range states {
		if s.Err != "" {
			p.addf("%s: state could not be read: %s", s.Replica, s.Err)
			continue
		}
		ok = append(ok, s)
	}
	// The reference is the digest most replicas share.
	count := map[string]int{}
	for _, s := range ok {
		count[s.Digest]++
	}
	var ref *ReplicaState
	for i := range ok {
		if ref == nil || count[ok[i].Digest] > count[ref.Digest] {
			ref = &ok[i]
		}
	}
	indexes := map[uint64]bool{}
	for _, s := range ok {
		indexes[s.Index] = true
		if s.Digest == ref.Digest {
			continue
		}
		p.addf("%s (index %d) diverges from %s (index %d): digest %s vs %s%s",
			s.Replica, s.Index, ref.Replica, ref.Index, short(s.Digest), short(ref.Digest), diffResources(ref, &s))
	}
	if len(indexes) > 1 && p.count() == 0 {
		var list []string
		for _, s := range ok {
			list = append(list, fmt.Sprintf("%s=%d", s.Replica, s.Index))
		}
		p.addf("replicas did not reach the same applied index: %s", strings.Join(list, " "))
	}
	switch {
	case p.count() > 0:
		v.Result = Fail
		v.Summary = fmt.Sprintf("%d replicas: %d differences", len(states), p.count())
		v.Problems = p.out()
	default:
		v.Result = Pass
		v.Summary = fmt.Sprintf("%d replicas hold identical state (digest %s, %d resources, applied index %d)",
			len(states), short(ref.Digest), len(ref.Resources), ref.Index)
	}
	return v
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// diffResources names up to five resources that differ between a and b.
func diffResources(a, b *ReplicaState) string {
	if a.Resources == nil || b.Resources == nil {
		return ""
	}
	var diffs []string
	for k, da := range a.Resources {
		db, ok := b.Resources[k]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+k)
		case da != db:
			diffs = append(diffs, "different "+k)
		}
	}
	for k := range b.Resources {
		if _, ok := a.Resources[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("%d more", len(diffs)-5))
	}
	return ": " + strings.Join(diffs, ", ")
}
