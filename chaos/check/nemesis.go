package check

import (
	"fmt"

	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// Nemesis checks that the nemesis did what the run is for: at least min
// fault windows carried out without an error (a fault that could not be
// injected or healed, a replica that did not stop on SIGTERM or did not come
// back healthy). A run whose faults did not happen proves nothing about
// them. Skipped when min is 0.
func Nemesis(faults []history.Fault, min int) Verdict {
	v := Verdict{Checker: "nemesis"}
	if min <= 0 {
		v.Result, v.Summary = Skipped, "no minimum number of faults asked for"
		return v
	}
	var p problems
	done := 0
	for _, f := range faults {
		if f.Error != "" {
			p.addf("%s at %s on %v: %s", f.Nemesis, ms(f.Start), f.Targets, f.Error)
			continue
		}
		if f.End != 0 {
			done++
		}
	}
	v.Problems = p.out()
	if done < min || p.count() > 0 {
		v.Result = Fail
		v.Summary = fmt.Sprintf("%d of %d faults carried out without an error, at least %d wanted and none failing", done, len(faults), min)
		return v
	}
	v.Result = Pass
	v.Summary = fmt.Sprintf("all %d faults carried out without an error (at least %d wanted)", done, min)
	return v
}
