package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/backend"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// Cluster answers the questions the nemesis asks the control plane.
type Cluster interface {
	// Leader is the replica the responsive replicas agree leads.
	Leader(ctx context.Context) (string, error)
	// WaitHealthy waits until every replica is ready and seen healthy.
	WaitHealthy(ctx context.Context) error
}

// Executor runs a plan against a backend and records every fault window.
type Executor struct {
	Backend  backend.Backend
	Cluster  Cluster
	Recorder *history.Recorder
	Logger   *slog.Logger
	// RestartWait bounds the wait for a restarted replica to be healthy
	// again (restart, rolling restart); 0 means 60s.
	RestartWait time.Duration
}

func (e *Executor) log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Run executes steps one after another until duration has passed (no step
// starts that could not end in time) or ctx ends. A step interrupted by ctx
// is healed before Run returns. Errors of single faults are recorded in
// their windows and logged; Run returns only ctx's error.
func (e *Executor) Run(ctx context.Context, steps []Step, duration time.Duration) error {
	deadline := time.Now().Add(duration)
	for _, s := range steps {
		if time.Until(deadline) < s.Gap+s.Hold {
			return nil
		}
		if err := sleep(ctx, s.Gap); err != nil {
			return err
		}
		if err := e.step(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// eligible returns the replicas that run and are not paused, in name order.
func (e *Executor) eligible() []string {
	var out []string
	for _, n := range e.Backend.Nodes() {
		if e.Backend.Running(n.Name) && !e.Backend.Paused(n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}

func allNames(b backend.Backend) []string {
	var out []string
	for _, n := range b.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

// leader returns the leader, or "" when none is known.
func (e *Executor) leader(ctx context.Context) string {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := e.Cluster.Leader(lctx)
	if err != nil {
		return ""
	}
	return l
}

// leaderOr returns the leader, or a random eligible replica when none is known.
func (e *Executor) leaderOr(ctx context.Context, pick uint64) (string, string) {
	if l := e.leader(ctx); l != "" {
		return l, "leader"
	}
	names := e.eligible()
	if len(names) == 0 {
		return "", ""
	}
	return names[pick%uint64(len(names))], "no leader known: a random replica"
}

// step injects one fault, holds it and heals it.
func (e *Executor) step(ctx context.Context, s Step) error {
	fault := history.Fault{Nemesis: string(s.Kind)}
	h := e.Recorder.BeginFault(fault)
	targets, detail, heal, err := e.inject(ctx, s)
	e.Recorder.SetFaultTargets(h, targets, detail)
	if err != nil {
		e.log().Warn("fault failed", "nemesis", s.Kind, "targets", targets, "err", err)
		if heal != nil {
			err = errors.Join(err, heal(context.WithoutCancel(ctx)))
		}
		e.Recorder.EndFault(h, err)
		return ctx.Err()
	}
	e.log().Info("fault", "nemesis", s.Kind, "targets", strings.Join(targets, ","), "detail", detail, "hold", s.Hold)
	holdErr := sleep(ctx, s.Hold)
	var healErr error
	if heal != nil {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		healErr = heal(hctx)
		cancel()
	}
	if healErr != nil {
		e.log().Warn("heal failed", "nemesis", s.Kind, "targets", targets, "err", healErr)
	}
	e.Recorder.EndFault(h, healErr)
	return holdErr
}

// inject applies the fault of s and returns the function that undoes it.
// Faults that end by themselves (restarts) do all their work here and
// return no heal.
func (e *Executor) inject(ctx context.Context, s Step) (targets []string, detail string, heal func(context.Context) error, err error) {
	b := e.Backend
	rng := newRand(s.Pick)
	random := func() (string, bool) {
		names := e.eligible()
		if len(names) == 0 {
			return "", false
		}
		return names[rng.IntN(len(names))], true
	}
	target := func(leader bool) (string, string, error) {
		if leader {
			t, d := e.leaderOr(ctx, s.Pick)
			if t == "" {
				return "", "", errors.New("no running replica")
			}
			return t, d, nil
		}
		t, ok := random()
		if !ok {
			return "", "", errors.New("no running replica")
		}
		return t, "random", nil
	}
	switch s.Kind {
	case Kill, KillLeader:
		t, d, err := target(s.Kind == KillLeader)
		if err != nil {
			return nil, "", nil, err
		}
		heal := func(ctx context.Context) error { return b.StartNode(ctx, t) }
		if err := b.Kill(ctx, t); err != nil {
			return []string{t}, d, heal, err
		}
		return []string{t}, d, heal, nil

	case Pause, PauseLeader:
		t, d, err := target(s.Kind == PauseLeader)
		if err != nil {
			return nil, "", nil, err
		}
		heal := func(ctx context.Context) error { return b.Resume(ctx, t) }
		return []string{t}, d, heal, b.Pause(ctx, t)

	case Restart:
		t, d, err := target(false)
		if err != nil {
			return nil, "", nil, err
		}
		return []string{t}, d, nil, e.restart(ctx, t)

	case RollingRestart:
		order, detail, err := e.rollingRestart(ctx)
		return order, detail, nil, err

	case PartitionLeader, PartitionHalves, PartitionBridge:
		cut, sides, err := e.partition(ctx, s, rng)
		if err != nil {
			return nil, "", nil, err
		}
		heal := func(ctx context.Context) error { return b.SetPartition(ctx, nil) }
		return allNames(b), sides, heal, b.SetPartition(ctx, cut)

	case SlowNetwork:
		var ts []string
		if s.Pick%2 == 0 {
			t, ok := random()
			if !ok {
				return nil, "", nil, errors.New("no running replica")
			}
			ts = []string{t}
		} else {
			ts = allNames(b)
		}
		heal := func(ctx context.Context) error {
			var errs []error
			for _, t := range ts {
				_, err := b.SetNetem(ctx, t, backend.Netem{})
				errs = append(errs, err)
			}
			return errors.Join(errs...)
		}
		applied := s.Netem.String()
		for _, t := range ts {
			a, err := b.SetNetem(ctx, t, s.Netem)
			if err != nil {
				return ts, applied, heal, err
			}
			applied = a
		}
		return ts, applied, heal, nil
	}
	return nil, "", nil, fmt.Errorf("%w: %s", backend.ErrUnavailable, s.Kind)
}

// restart stops a replica gracefully, starts it again (on its data dir) and
// waits until the cluster is healthy again (bounded). A replica that did not
// stop on SIGTERM within the backend's grace period is still started again,
// and the error says so.
func (e *Executor) restart(ctx context.Context, name string) error {
	stopErr := e.Backend.Stop(ctx, name)
	if stopErr != nil {
		e.log().Warn("graceful stop", "replica", name, "err", stopErr)
		stopErr = fmt.Errorf("graceful stop of %s: %w", name, stopErr)
	}
	if err := e.Backend.StartNode(ctx, name); err != nil {
		return errors.Join(stopErr, fmt.Errorf("start %s: %w", name, err))
	}
	wait := e.RestartWait
	if wait <= 0 {
		wait = 60 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := e.Cluster.WaitHealthy(wctx); err != nil && ctx.Err() == nil {
		return errors.Join(stopErr, fmt.Errorf("after restarting %s: %w", name, err))
	}
	return stopErr
}

// rollingRestart restarts every replica once, one at a time, followers
// first and the leader last: before each restart it asks again who leads
// (a restart may move leadership) and takes a replica not restarted yet
// that does not lead, the leader only when no other is left. Each replica
// is stopped gracefully (SIGTERM), started again on its data dir, and the
// next one waits until the whole cluster is ready and healthy again. It
// returns the replicas in the order restarted and how each was chosen.
func (e *Executor) rollingRestart(ctx context.Context) ([]string, string, error) {
	left := allNames(e.Backend)
	var order, how []string
	for len(left) > 0 {
		leader := e.leader(ctx) // "" when none is known: any order will do
		i := slices.IndexFunc(left, func(n string) bool { return n != leader })
		if i < 0 {
			i = 0 // only the leader is left
		}
		t := left[i]
		role := "follower"
		switch {
		case t == leader:
			role = "leader"
		case leader == "":
			role = "no leader known"
		}
		left = slices.Delete(left, i, i+1)
		order = append(order, t)
		how = append(how, t+" ("+role+")")
		if err := e.restart(ctx, t); err != nil {
			return order, strings.Join(how, ", "), err
		}
	}
	return order, strings.Join(how, ", "), nil
}

// partition computes the links to cut and describes the sides.
func (e *Executor) partition(ctx context.Context, s Step, rng *rand.Rand) ([]backend.Pair, string, error) {
	names := allNames(e.Backend)
	n := len(names)
	if n < 2 {
		return nil, "", errors.New("a partition needs two replicas")
	}
	cutAcross := func(a, b []string) []backend.Pair {
		var cut []backend.Pair
		for _, x := range a {
			for _, y := range b {
				cut = append(cut, backend.Pair{x, y})
			}
		}
		return cut
	}
	perm := rng.Perm(n)
	shuffled := make([]string, n)
	for i, p := range perm {
		shuffled[i] = names[p]
	}
	switch s.Kind {
	case PartitionLeader:
		leader, how := e.leaderOr(ctx, s.Pick)
		if leader == "" {
			return nil, "", errors.New("no running replica")
		}
		var rest []string
		for _, x := range names {
			if x != leader {
				rest = append(rest, x)
			}
		}
		return cutAcross([]string{leader}, rest), fmt.Sprintf("{%s} (%s) | {%s}", leader, how, strings.Join(rest, ",")), nil
	case PartitionHalves:
		minority := shuffled[:(n-1)/2]
		if len(minority) == 0 {
			minority = shuffled[:1]
		}
		majority := shuffled[len(minority):]
		return cutAcross(minority, majority), fmt.Sprintf("{%s} | {%s}", strings.Join(sorted(minority), ","), strings.Join(sorted(majority), ",")), nil
	default: // bridge
		if n < 3 {
			return nil, "", errors.New("a bridge partition needs three replicas")
		}
		bridge := shuffled[0]
		rest := shuffled[1:]
		a, b := rest[:len(rest)/2], rest[len(rest)/2:]
		return cutAcross(a, b), fmt.Sprintf("{%s} | {%s}, %s bridges", strings.Join(sorted(a), ","), strings.Join(sorted(b), ","), bridge), nil
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// HealAll undoes every fault: no partition, normal network, every replica
// resumed and started. It tries everything and returns every error.
func HealAll(ctx context.Context, b backend.Backend) error {
	var errs []error
	unavailable := b.Unavailable()
	if _, ok := unavailable[backend.FaultPartition]; !ok {
		errs = append(errs, b.SetPartition(ctx, nil))
	}
	if _, ok := unavailable[backend.FaultNetem]; !ok {
		for _, n := range b.Nodes() {
			_, err := b.SetNetem(ctx, n.Name, backend.Netem{})
			errs = append(errs, err)
		}
	}
	for _, n := range b.Nodes() {
		switch {
		case !b.Running(n.Name):
			errs = append(errs, b.StartNode(ctx, n.Name))
		case b.Paused(n.Name):
			errs = append(errs, b.Resume(ctx, n.Name))
		}
	}
	return errors.Join(errs...)
}

// newRand is the generator that turns a step's pick into target choices.
func newRand(pick uint64) *rand.Rand { return rand.New(rand.NewPCG(pick, 0x5eed)) }
