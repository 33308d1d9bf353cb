package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kuma-ha/kuma-ha/fsm"
)

// Apply proposes a command through the leader (forwarded if this replica is a
// follower) and returns once it is committed and applied on the leader. This
// replica's state shows it once WaitVisible returns: a follower learns of the
// commit only with the leader's next message, and its reads, not its writes,
// wait for that (read-your-writes on every replica, for every caller that
// calls WaitVisible before reading). A deterministic rejection is
// Result.Err, not err. The errors are those of
// api.go: refused before proposing (ErrNoQuorum, ErrShuttingDown,
// ErrProtocolVersion) or ErrOutcomeUnknown; MayHaveApplied tells them apart.
// The Result carries the entry's index, Created and Err, never the stored
// resource (its version is the index).
//
// The command is stamped with this replica's clock and encoded once; the same
// bytes are forwarded and proposed. It is retried once, on a new leader, only
// when it certainly was not proposed (the first leader refused it or could not
// be reached).
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if err := n.usable(); err != nil {
		return nil, err
	}
	start := time.Now()
	defer func() { n.metrics.applyLatency.Observe(time.Since(start).Seconds()) }()

	if cmd.Time.IsZero() {
		cmd.Time = time.Now().UTC()
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout+2*n.cfg.ElectionTimeout)
	defer cancel()

	var res *fsm.Result
	err = n.onLeader(ctx,
		func(ctx context.Context) (err error) {
			res, err = n.applyOnLeader(ctx, cmd.Type, data)
			return err
		},
		func(ctx context.Context, leader string) error {
			start := time.Now()
			var w wireResult
			err := n.call(ctx, "POST", leader, "/v1/apply", data, &w)
			n.metrics.commitLatency.Observe(time.Since(start).Seconds())
			if err == nil {
				res = decodeResult(&w)
			}
			return err
		})
	if err != nil {
		return nil, err
	}
	n.raiseVisible(res.Index)
	return res, nil
}

// raiseVisible records that index is committed and answered: reads on this
// replica from now on must include it.
func (n *Node) raiseVisible(index uint64) {
	for {
		cur := n.visible.Load()
		if index <= cur || n.visible.CompareAndSwap(cur, index) {
			return
		}
	}
}

// WaitVisible returns once this replica's state includes every write Apply
// has answered here (at once, unless a follower has not yet heard of the
// commit of its last forwarded write). Bounded by ApplyTimeout: a replica
// cut off right after such a write answers ErrNoQuorum rather than a read
// without it.
func (n *Node) WaitVisible(ctx context.Context) error {
	target := n.visible.Load()
	if n.state.AppliedIndex() >= target {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	switch err := n.waitApplied(ctx, target); {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: this replica has not yet applied entry %d, which it acknowledged", ErrNoQuorum, target)
	default:
		return err
	}
}

// usable refuses work before Start and after Close.
func (n *Node) usable() error {
	if n.closing.Load() {
		return ErrShuttingDown
	}
	if !n.running.Load() {
		return fmt.Errorf("%w: replica not started", ErrNoQuorum)
	}
	return nil
}

// onLeader runs local when this replica leads and remote(leader's address)
// otherwise. It retries once, on whichever replica leads then, only when the
// first attempt certainly did not propose; every other failure is classified
// and returned.
func (n *Node) onLeader(ctx context.Context, local func(context.Context) error, remote func(ctx context.Context, leader string) error) error {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		addr, id, err := n.waitLeader(ctx)
		if err != nil {
			return err
		}
		if id == n.cfg.Name {
			err = local(ctx)
		} else {
			err = remote(ctx, addr)
		}
		switch {
		case err == nil:
			return nil
		case notProposed(err):
			n.log.Debug("leader refused before proposing; retrying", "leader", id, "err", err)
			lastErr = err
		default:
			return n.classify(ctx, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrNoQuorum, lastErr)
}

// notProposed: the contacted leader certainly did not propose the command
// (it was not the leader, was stopping before proposing, or was never reached).
func notProposed(err error) bool {
	var nl *NotLeaderError
	return errors.As(err, &nl) || errors.Is(err, errUnreachable)
}

// classify keeps the errors of api.go and turns everything else (a broken
// connection after the request was sent, a deadline while the leader worked)
// into ErrOutcomeUnknown.
func (n *Node) classify(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrOutcomeUnknown), errors.Is(err, ErrNoQuorum), errors.Is(err, ErrShuttingDown),
		errors.Is(err, ErrProtocolVersion), errors.Is(err, ErrUnknownReplica):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	default:
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
}

// waitLeader returns the current leader, waiting up to twice the election
// timeout for one to be elected; then ErrNoQuorum.
func (n *Node) waitLeader(ctx context.Context) (addr, id string, err error) {
	deadline := time.Now().Add(2 * n.cfg.ElectionTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n.closing.Load() {
			return "", "", ErrShuttingDown
		}
		a, i := n.raft.LeaderWithID()
		if a != "" && i != "" {
			return string(a), string(i), nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("%w: no leader elected within %s", ErrNoQuorum, 2*n.cfg.ElectionTimeout)
		}
		select {
		case <-ctx.Done():
			return "", "", n.ctxErr(ctx)
		case <-n.shutdownCh:
			return "", "", ErrShuttingDown
		case <-tick.C:
		}
	}
}

// ctxErr reports a timeout of our own bounded wait as ErrNoQuorum; for waits
// that come before anything is proposed.
func (n *Node) ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrNoQuorum, ctx.Err())
	}
	return ctx.Err()
}

// notLeader is the refusal of a replica that does not lead.
func (n *Node) notLeader() error {
	_, id := n.raft.LeaderWithID()
	return &NotLeaderError{Leader: string(id)}
}

// applyOnLeader proposes data (an encoded command of type t) on this
// replica, which must lead.
func (n *Node) applyOnLeader(ctx context.Context, t fsm.CommandType, data []byte) (*fsm.Result, error) {
	if n.closing.Load() {
		return nil, ErrShuttingDown
	}
	if n.raft.State() != raft.Leader {
		return nil, n.notLeader()
	}
	if err := n.checkProtocol(t); err != nil {
		return nil, err
	}
	start := time.Now()
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	if h := n.hooks.proposed.Load(); h != nil {
		(*h)(n, data)
	}
	if err := n.await(ctx, f); err != nil {
		return nil, n.proposalErr(err)
	}
	n.metrics.commitLatency.Observe(time.Since(start).Seconds())
	res, ok := f.Response().(*fsm.Result)
	if !ok || res == nil {
		return nil, fmt.Errorf("%w: state machine returned %T, not *fsm.Result", ErrOutcomeUnknown, f.Response())
	}
	return &fsm.Result{Index: res.Index, Created: res.Created, Err: res.Err}, nil
}

// proposalErr classifies the error of raft.Apply's future. Only refusals
// raft makes before the entry enters the log are "not proposed"; once it
// may be in the log (shutdown, lost leadership, timeouts, our context) the
// outcome is unknown.
func (n *Node) proposalErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	default:
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
}

// errStopped: this replica began to shut down before a future resolved.
// (hashicorp/raft does not resolve the future of an entry that was
// committed but not yet applied when it shuts down.)
var errStopped = errors.New("replica stopped while waiting for raft")

// await is the one bridge from a raft future to a context: the future's
// error, ctx's once ctx ends first, or errStopped once the replica begins to
// shut down. raft still resolves the future later (or never, on shutdown);
// the goroutine ends with raft.
func (n *Node) await(ctx context.Context, f raft.Future) error {
	errCh := make(chan error, 1)
	go func() { errCh <- f.Error() }()
	select {
	case err := <-errCh:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.shutdownCh:
		return errStopped
	}
}

// checkProtocol is the rolling-upgrade gate: every known replica (alive in
// gossip or in the Raft configuration) must understand the command.
func (n *Node) checkProtocol(t fsm.CommandType) error {
	need := t.MinProtocol()
	if need <= 1 {
		return nil // every released protocol knows version-1 commands
	}
	inConfig := map[string]bool{}
	if cfg, err := n.configuration(); err == nil {
		for _, s := range cfg.Servers {
			inConfig[string(s.ID)] = true
		}
	}
	for _, m := range n.serverMembers(false) {
		if !m.alive() && !inConfig[m.meta.Name] {
			continue
		}
		if m.meta.Protocol < need {
			return fmt.Errorf("%w: %s needs protocol %d but replica %s (version %q) speaks %d", ErrProtocolVersion, t, need, m.meta.Name, m.meta.Version, m.meta.Protocol)
		}
	}
	return nil
}

// ConsistentRead returns once this replica's state includes every write
// committed before the call (read index through the leader).
func (n *Node) ConsistentRead(ctx context.Context) error {
	if err := n.usable(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout+2*n.cfg.ElectionTimeout)
	defer cancel()
	var idx uint64
	err := n.onLeader(ctx,
		func(ctx context.Context) (err error) {
			idx, err = n.leaderReadIndex(ctx)
			return err
		},
		func(ctx context.Context, leader string) error {
			var resp readIndexResponse
			err := n.call(ctx, "GET", leader, "/v1/readindex", nil, &resp)
			idx = resp.Index
			return err
		})
	if err == nil {
		err = n.waitApplied(ctx, idx)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return err
	case errors.Is(err, ErrNoQuorum), errors.Is(err, ErrShuttingDown):
		return err
	default:
		// A read changes nothing: whatever went wrong, there is no consistent
		// read (and no write whose outcome is unknown: the cause is text only).
		return fmt.Errorf("%w: %v", ErrNoQuorum, err)
	}
}

// leaderReadIndex: the commit index, once leadership is verified with a
// quorum. A new leader first commits an entry of its own term (the barrier
// run by the leader loop) so its commit index covers every earlier write.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if n.closing.Load() {
		return 0, ErrShuttingDown
	}
	if n.raft.State() != raft.Leader {
		return 0, n.notLeader()
	}
	if n.leaderReadyTerm.Load() != n.raft.CurrentTerm() {
		if err := n.await(ctx, n.raft.Barrier(n.cfg.ApplyTimeout)); err != nil {
			return 0, n.readErr(ctx, err)
		}
	}
	idx := n.raft.CommitIndex()
	if err := n.await(ctx, n.raft.VerifyLeader()); err != nil {
		return 0, n.readErr(ctx, err)
	}
	return idx, nil
}

// readErr classifies a failed barrier or leadership check of a read: reads
// change nothing, so losing leadership is a plain refusal (retry elsewhere).
func (n *Node) readErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return n.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, errStopped):
		return ErrShuttingDown
	case ctx.Err() != nil:
		return n.ctxErr(ctx)
	default:
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
}

// waitApplied returns once the state machine has applied everything up to
// target. hashicorp/raft does not hand no-op and barrier entries to the FSM,
// so an AppliedIndex below target is enough when every entry in between is
// such an entry and raft has already dispatched them.
func (n *Node) waitApplied(ctx context.Context, target uint64) error {
	for {
		ok, next := n.appliedUpTo(target)
		if ok {
			return nil
		}
		// Wake on the next FSM apply, or poll shortly for raft-only progress.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		err := n.state.WaitApplied(wctx, next)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if n.closing.Load() {
			return ErrShuttingDown
		}
	}
}

// appliedUpTo reports whether the FSM includes every entry up to target;
// otherwise next is the index to wait for.
func (n *Node) appliedUpTo(target uint64) (bool, uint64) {
	applied := n.state.AppliedIndex()
	if applied >= target {
		return true, target
	}
	if n.raft.AppliedIndex() < target {
		return false, applied + 1
	}
	first, _ := n.stores.log.FirstIndex()
	for i := applied + 1; i <= target; i++ {
		var l raft.Log
		if err := n.stores.log.GetLog(i, &l); err != nil {
			if i < first {
				continue // compacted into a snapshot the FSM already has
			}
			return false, applied + 1
		}
		switch l.Type {
		case raft.LogNoop, raft.LogBarrier, raft.LogAddPeerDeprecated, raft.LogRemovePeerDeprecated:
			continue
		default:
			return false, i
		}
	}
	return true, target
}

// RemoveReplica removes a replica from the Raft configuration (forwarded to the leader).
func (n *Node) RemoveReplica(ctx context.Context, name string) error {
	if err := n.usable(); err != nil {
		return err
	}
	if name == "" {
		return errors.New("remove replica: name is required")
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout+2*n.cfg.ElectionTimeout)
	defer cancel()
	return n.onLeader(ctx,
		func(ctx context.Context) error { return n.removeOnLeader(ctx, name) },
		func(ctx context.Context, leader string) error {
			return n.call(ctx, "POST", leader, "/v1/remove?name="+urlQueryEscape(name), nil, nil)
		})
}

func (n *Node) removeOnLeader(ctx context.Context, name string) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	cfg, err := n.configuration()
	if err != nil {
		return n.readErr(ctx, err)
	}
	found := false
	for _, s := range cfg.Servers {
		if string(s.ID) == name {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownReplica, name)
	}
	// Keep the reconciler from adding it straight back while it is alive.
	n.mu.Lock()
	n.mu.tombstones[name] = true
	n.mu.Unlock()
	if err := n.await(ctx, n.raft.RemoveServer(raft.ServerID(name), 0, n.cfg.ApplyTimeout)); err != nil {
		return n.proposalErr(err)
	}
	n.log.Info("removed replica from the cluster", "member", name)
	return nil
}
