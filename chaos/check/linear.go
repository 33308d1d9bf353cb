package check

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// register is the state of one key in the sequential model: a versioned
// register that may be absent. Version 0 means "not known" (the value came
// from a write whose answer was lost); when the resource is absent, Version is
// the last version known to precede the deletion (a lower bound).
type register struct {
	Exists  bool
	Value   string
	Version uint64
}

// stepRegister returns the states the register can be in after op, or nil if
// op cannot have happened in state s. Versions are Raft indexes: every write
// gets a larger one than the version it replaced.
func stepRegister(s register, op *history.Op) []register {
	unknownVersion := s.Version == 0
	switch op.Kind {
	case history.Read:
		if !op.Found {
			if s.Exists {
				return nil
			}
			return []register{s}
		}
		if !s.Exists || s.Value != op.Value || (!unknownVersion && s.Version != op.Version) {
			return nil
		}
		return []register{{Exists: true, Value: op.Value, Version: op.Version}}

	case history.Write:
		if op.Outcome == history.Unknown {
			return []register{{Exists: true, Value: op.Value}}
		}
		if !unknownVersion && op.Version <= s.Version {
			return nil
		}
		if (op.Status == 201) == s.Exists { // 201 Created iff it did not exist
			return nil
		}
		return []register{{Exists: true, Value: op.Value, Version: op.Version}}

	case history.CAS:
		matches := s.Exists && s.Version == op.IfVersion
		mayMatch := s.Exists && (unknownVersion || s.Version == op.IfVersion)
		applied := register{Exists: true, Value: op.Value, Version: op.Version}
		switch op.Outcome {
		case history.Unknown:
			applied.Version = 0
			switch {
			case matches:
				return []register{applied}
			case mayMatch:
				return []register{applied, s}
			default:
				return []register{s}
			}
		case history.OK:
			if !mayMatch || op.Version <= op.IfVersion {
				return nil
			}
			return []register{applied}
		default: // 412
			if matches {
				return nil
			}
			return []register{s}
		}

	case history.Delete:
		conditional := op.IfVersion != 0
		matches := s.Exists && (!conditional || s.Version == op.IfVersion)
		mayMatch := s.Exists && (!conditional || unknownVersion || s.Version == op.IfVersion)
		deleted := register{Version: s.Version}
		switch op.Outcome {
		case history.Unknown:
			switch {
			case matches:
				return []register{deleted}
			case mayMatch:
				return []register{deleted, s}
			default:
				return []register{s}
			}
		case history.OK:
			if !mayMatch {
				return nil
			}
			return []register{deleted}
		default:
			if op.Status == 404 {
				if s.Exists {
					return nil
				}
				return []register{s}
			}
			// 412: it exists with another version.
			if !s.Exists || (conditional && s.Version == op.IfVersion) {
				return nil
			}
			return []register{s}
		}
	}
	return nil
}

// registerModel is porcupine's model of one key (the history is partitioned
// by key before checking).
func registerModel() porcupine.Model {
	nd := porcupine.NondeterministicModel{
		Init: func() []interface{} { return []interface{}{register{}} },
		Step: func(state, input, _ interface{}) []interface{} {
			next := stepRegister(state.(register), input.(*history.Op))
			out := make([]interface{}, len(next))
			for i, r := range next {
				out[i] = r
			}
			return out
		},
		Equal: func(a, b interface{}) bool { return a.(register) == b.(register) },
		DescribeOperation: func(input, _ interface{}) string {
			return describeOp(input.(*history.Op))
		},
		DescribeState: func(state interface{}) string {
			s := state.(register)
			if !s.Exists {
				return "absent"
			}
			if s.Version == 0 {
				return fmt.Sprintf("%s@?", s.Value)
			}
			return fmt.Sprintf("%s@%d", s.Value, s.Version)
		},
	}
	m := nd.ToModel()
	return m
}

func describeOp(op *history.Op) string {
	var s string
	switch op.Kind {
	case history.Read:
		if op.Found {
			s = fmt.Sprintf("read() -> %s@%d", op.Value, op.Version)
		} else {
			s = "read() -> absent"
		}
	case history.Write:
		s = fmt.Sprintf("write(%s) -> @%d", op.Value, op.Version)
	case history.CAS:
		s = fmt.Sprintf("cas(@%d, %s) -> @%d", op.IfVersion, op.Value, op.Version)
	case history.Delete:
		if op.IfVersion != 0 {
			s = fmt.Sprintf("delete(@%d)", op.IfVersion)
		} else {
			s = "delete()"
		}
	}
	switch {
	case op.Outcome == history.Unknown:
		s += " ?"
	case op.Outcome == history.Fail:
		s += fmt.Sprintf(" %d", op.Status)
	}
	return fmt.Sprintf("%s [#%d %s]", s, op.ID, op.Replica)
}

// linearizable reports whether op carries information for the register
// model: consistent reads that returned, writes that took effect or may have,
// and rejections that say something about the state (404, 412).
func checkedByModel(op *history.Op) bool {
	switch op.Kind {
	case history.Read:
		return op.Consistent && op.Outcome == history.OK
	case history.Write:
		return op.Outcome == history.OK || op.Outcome == history.Unknown
	case history.CAS, history.Delete:
		switch op.Outcome {
		case history.OK, history.Unknown:
			return true
		case history.Fail:
			return op.Status == 412 || (op.Kind == history.Delete && op.Status == 404)
		}
	}
	return false
}

// LinearizableOptions tune Linearizable.
type LinearizableOptions struct {
	// Timeout bounds the search per key; 0 means one minute. A key whose
	// search times out makes the verdict Unknown.
	Timeout time.Duration
	// VisualizeDir, if set, receives porcupine's HTML visualization of the
	// first non-linearizable key (linearizability-KEY.html).
	VisualizeDir string
}

// Linearizable checks with porcupine that the writes, conditional writes,
// deletes and consistent reads of every key form a linearizable history of a
// versioned register. Plain (non-consistent) reads are not linearizable by
// contract and are checked by StaleReads instead. A write with an unknown
// outcome may take effect at any time after its invocation, or never.
func Linearizable(ops []history.Op, opts LinearizableOptions) Verdict {
	v := Verdict{Checker: "linearizable"}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	n := 0
	for i := range ops {
		op := &ops[i]
		if !checkedByModel(op) {
			continue
		}
		ret := op.Complete
		if op.Outcome == history.Unknown {
			ret = math.MaxInt64
		}
		if _, ok := byKey[op.Key]; !ok {
			keys = append(keys, op.Key)
		}
		byKey[op.Key] = append(byKey[op.Key], porcupine.Operation{
			ClientId: op.Client, Input: op, Output: op, Call: op.Invoke, Return: ret,
		})
		n++
	}
	slices.Sort(keys)
	if n == 0 {
		v.Result = Unknown
		v.Summary = "no operation to check"
		return v
	}
	model := registerModel()
	var bad, timedOut []string
	for _, k := range keys {
		res, info := porcupine.CheckOperationsVerbose(model, byKey[k], opts.Timeout)
		switch res {
		case porcupine.Ok:
		case porcupine.Illegal:
			bad = append(bad, k)
			if opts.VisualizeDir != "" && len(v.Artifacts) == 0 {
				name := "linearizability-" + sanitize(k) + ".html"
				if err := porcupine.VisualizePath(model, info, filepath.Join(opts.VisualizeDir, name)); err == nil {
					v.Artifacts = append(v.Artifacts, name)
				}
			}
		default:
			timedOut = append(timedOut, k)
		}
	}
	switch {
	case len(bad) > 0:
		v.Result = Fail
		v.Summary = fmt.Sprintf("%d operations on %d keys: NOT linearizable on %d keys (%s)", n, len(keys), len(bad), strings.Join(bad, ", "))
		for _, k := range bad {
			v.Problems = append(v.Problems, fmt.Sprintf("key %s: no linearization of its %d operations exists; %s", k, len(byKey[k]), explainKey(byKey[k])))
		}
	case len(timedOut) > 0:
		v.Result = Unknown
		v.Summary = fmt.Sprintf("%d operations on %d keys: search timed out (%s) on %d keys (%s)", n, len(keys), opts.Timeout, len(timedOut), strings.Join(timedOut, ", "))
	default:
		v.Result = Pass
		v.Summary = fmt.Sprintf("%d operations on %d keys are linearizable", n, len(keys))
	}
	return v
}

// explainKey gives a hint for a failed key: the first consistent read that
// returns a value some completed operation had already replaced.
func explainKey(pops []porcupine.Operation) string {
	for _, p := range pops {
		r := p.Input.(*history.Op)
		if r.Kind != history.Read || !r.Found {
			continue
		}
		for _, q := range pops {
			w := q.Input.(*history.Op)
			if w.Kind != history.Read && w.Outcome == history.OK && w.Complete < r.Invoke && w.Version > r.Version {
				return fmt.Sprintf("e.g. read #%d on %s at %s returned %s@%d, but #%d (%s) had completed at %s",
					r.ID, r.Replica, ms(r.Invoke), r.Value, r.Version, w.ID, describeOp(w), ms(w.Complete))
			}
		}
	}
	return "see the visualization"
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
