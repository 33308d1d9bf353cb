// Package check holds the checkers of a chaos run: pure functions from what
// was recorded (the operation history, final states of the replicas, polls of
// the cluster after healing, proxy traffic) to a verdict. They do no I/O,
// except that Linearizable may write porcupine's visualization of a failure.
package check

import (
	"fmt"
	"slices"
	"strings"
)

// Result is a checker's conclusion.
type Result string

const (
	Pass    Result = "pass"
	Fail    Result = "fail"
	Unknown Result = "unknown" // could not decide (timeout, missing evidence): not a pass
	Skipped Result = "skipped" // nothing to check (no such workload in this run)
)

// Verdict is one checker's answer.
type Verdict struct {
	Checker string `json:"checker"`
	Result  Result `json:"result"`
	// Summary is one line: what was checked and the conclusion.
	Summary string `json:"summary"`
	// Problems lists violations (at most MaxProblems, then a count).
	Problems []string `json:"problems,omitempty"`
	// Artifacts are files the checker wrote (relative names in the run directory).
	Artifacts []string `json:"artifacts,omitempty"`
}

// OK reports whether the verdict lets the run pass (pass or skipped).
func (v Verdict) OK() bool { return v.Result == Pass || v.Result == Skipped }

func (v Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s", v.Checker, strings.ToUpper(string(v.Result)), v.Summary)
	for _, p := range v.Problems {
		b.WriteString("\n  - " + p)
	}
	return b.String()
}

// MaxProblems bounds the problems listed in a verdict.
const MaxProblems = 20

// problems collects violations up to MaxProblems and counts the rest.
type problems struct {
	list  []string
	extra int
}

func (p *problems) addf(format string, args ...any) {
	if len(p.list) < MaxProblems {
		p.list = append(p.list, fmt.Sprintf(format, args...))
		return
	}
	p.extra++
}

func (p *problems) count() int { return len(p.list) + p.extra }

func (p *problems) out() []string {
	if p.extra == 0 {
		return p.list
	}
	return append(slices.Clone(p.list), fmt.Sprintf("... and %d more", p.extra))
}

// AllOK reports whether every verdict lets the run pass.
func AllOK(vs []Verdict) bool {
	for _, v := range vs {
		if !v.OK() {
			return false
		}
	}
	return true
}

func ms(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }
