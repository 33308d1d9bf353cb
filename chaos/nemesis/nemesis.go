// Package nemesis plans and injects the faults of a chaos run: a schedule
// drawn from a seed (so a run can be repeated), executed one fault at a time
// against a backend, each fault recorded as a window in the history, and a
// final heal that undoes everything.
package nemesis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/backend"
)

// Kind is one nemesis.
type Kind string

const (
	Kill            Kind = "kill"             // SIGKILL a random replica, start it again after the hold
	KillLeader      Kind = "kill-leader"      // the same, to the leader
	Pause           Kind = "pause"            // SIGSTOP a random replica, SIGCONT after the hold
	PauseLeader     Kind = "pause-leader"     // the same, to the leader
	Restart         Kind = "restart"          // graceful restart (SIGTERM, start) of a random replica
	RollingRestart  Kind = "rolling-restart"  // graceful restart of every replica in turn, the leader last
	PartitionLeader Kind = "partition-leader" // cut the leader off from every other replica
	PartitionHalves Kind = "partition-halves" // a random minority against the majority
	PartitionBridge Kind = "partition-bridge" // two sides that cannot talk, one replica that talks to both
	SlowNetwork     Kind = "netem"            // delay, jitter, loss and a rate limit on one or every replica
	ClockSkew       Kind = "clock-skew"       // never available (see backend.FaultClockSkew)
)

// All lists every kind, in a stable order.
var All = []Kind{Kill, KillLeader, Pause, PauseLeader, Restart, RollingRestart,
	PartitionLeader, PartitionHalves, PartitionBridge, SlowNetwork, ClockSkew}

// Groups are shorthands accepted by ParseKinds.
var Groups = map[string][]Kind{
	"all":       All,
	"process":   {Kill, KillLeader, Pause, PauseLeader, Restart, RollingRestart},
	"partition": {PartitionLeader, PartitionHalves, PartitionBridge},
	"smoke":     {Kill, KillLeader, Pause, PauseLeader, Restart},
}

// Fault is the backend capability a kind needs.
func (k Kind) Fault() backend.Fault {
	switch k {
	case Kill, KillLeader:
		return backend.FaultKill
	case Pause, PauseLeader:
		return backend.FaultPause
	case Restart, RollingRestart:
		return backend.FaultRestart
	case PartitionLeader, PartitionHalves, PartitionBridge:
		return backend.FaultPartition
	case SlowNetwork:
		return backend.FaultNetem
	default:
		return backend.FaultClockSkew
	}
}

// ParseKinds parses a comma-separated list of kinds and groups.
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if g, ok := Groups[f]; ok {
			out = append(out, g...)
			continue
		}
		if !slices.Contains(All, Kind(f)) {
			var names []string
			for _, k := range All {
				names = append(names, string(k))
			}
			for g := range Groups {
				names = append(names, g)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("--nemesis: unknown nemesis %q; known: %s", f, strings.Join(names, ", "))
		}
		out = append(out, Kind(f))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, errors.New("--nemesis: empty list")
	}
	return out, nil
}

// Step is one planned fault.
type Step struct {
	Kind Kind          `json:"kind"`
	Gap  time.Duration `json:"gap"`  // quiet time before it
	Hold time.Duration `json:"hold"` // how long the fault lasts (kill, pause, partition, netem)
	Pick uint64        `json:"pick"` // random draw that chooses targets among the replicas at run time
	// Netem settings of a SlowNetwork step.
	Netem backend.Netem `json:"netem,omitzero"`
}

// Timing bounds the random parts of a plan.
type Timing struct {
	MinGap, MaxGap   time.Duration
	MinHold, MaxHold time.Duration
}

// DefaultTiming suits a 3-replica cluster with kuma-cp's default Raft timeouts.
var DefaultTiming = Timing{MinGap: 2 * time.Second, MaxGap: 5 * time.Second, MinHold: 3 * time.Second, MaxHold: 10 * time.Second}

// Plan draws enough steps from seed to fill duration (an upper bound; the
// executor stops starting steps when the duration is up). The same seed,
// kinds, duration and timing give the same plan.
func Plan(seed uint64, kinds []Kind, duration time.Duration, t Timing) []Step {
	if len(kinds) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var steps []Step
	var total time.Duration
	for total < duration {
		s := Step{
			Kind: kinds[rng.IntN(len(kinds))],
			Gap:  between(t.MinGap, t.MaxGap),
			Hold: between(t.MinHold, t.MaxHold),
			Pick: rng.Uint64(),
		}
		if s.Kind == SlowNetwork {
			s.Netem = backend.Netem{
				Delay:  time.Duration(20+rng.IntN(180)) * time.Millisecond,
				Jitter: time.Duration(rng.IntN(30)) * time.Millisecond,
				Loss:   float64(rng.IntN(80)) / 10,
				Rate:   []int{0, 256, 512, 1024, 4096}[rng.IntN(5)],
			}
		}
		steps = append(steps, s)
		total += s.Gap + s.Hold
	}
	return steps
}
