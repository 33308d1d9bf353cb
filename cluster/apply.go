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
// follower) and returns once this replica has applied it (read-your-writes).
// Errors: ErrNoQuorum, ErrShuttingDown, ErrProtocolVersion, ctx errors. A
// deterministic rejection is Result.Err, not err.
//
// A command is retried once against a new leader only when it certainly was
// not proposed (the first leader refused it or could not be reached). When
// leadership is lost after proposing, the outcome is unknown and Apply
// returns ErrNoQuorum rather than risk applying it twice.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if err := n.usable(); err != nil {
		return nil, err
	}
	start := time.Now()
	defer func() { n.metrics.applyLatency.Observe(time.Since(start).Seconds()) }()

	// Validate the encoding here so a bad command fails on this replica.
	if _, err := fsm.Encode(cmd); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout+2*n.cfg.ElectionTimeout)
	defer cancel()

	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		leaderAddr, leaderID, err := n.waitLeader(ctx)
		if err != nil {
			return nil, err
		}
		if leaderID == n.cfg.Name {
			res, err := n.applyOnLeader(ctx, cmd)
			if err != nil && retryable(err) {
				lastErr = err
				continue
			}
			return res, err
		}
		res, err := n.forwardApply(ctx, leaderAddr, cmd)
		if err != nil {
			if retryable(err) {
				lastErr = err
				n.log.Debug("forwarded apply refused; retrying", "leader", leaderID, "err", err)
				continue
			}
			return nil, n.mapErr(ctx, err)
		}
		if err := n.waitApplied(ctx, res.Index); err != nil {
			return nil, n.mapErr(ctx, fmt.Errorf("wait for local apply of entry %d: %w", res.Index, err))
		}
		return res, nil
	}
	return nil, fmt.Errorf("%w: %v", ErrNoQuorum, lastErr)
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

// retryable: the command was certainly not proposed by the contacted leader.
func retryable(err error) bool {
	var nl *NotLeaderError
	return errors.As(err, &nl) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, errUnreachable)
}

// mapErr turns transport failures into ErrNoQuorum, keeping ctx and typed errors.
func (n *Node) mapErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case n.closing.Load():
		return ErrShuttingDown
	case errors.Is(err, ErrNoQuorum), errors.Is(err, ErrShuttingDown), errors.Is(err, ErrProtocolVersion), errors.Is(err, ErrUnknownReplica):
		return err
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return err
	default:
		return fmt.Errorf("%w: %v", ErrNoQuorum, err)
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

// ctxErr reports a timeout of our own bounded wait as ErrNoQuorum.
func (n *Node) ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", ErrNoQuorum, ctx.Err())
	}
	return ctx.Err()
}

// applyOnLeader proposes cmd on this replica, which must lead.
func (n *Node) applyOnLeader(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if n.closing.Load() {
		return nil, ErrShuttingDown
	}
	if n.raft.State() != raft.Leader {
		_, id := n.raft.LeaderWithID()
		return nil, &NotLeaderError{Leader: string(id)}
	}
	if err := n.checkProtocol(cmd.Type); err != nil {
		return nil, err
	}
	if cmd.Time.IsZero() {
		cmd.Time = time.Now().UTC()
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	start := time.Now()
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	errCh := make(chan error, 1)
	go func() { errCh <- f.Error() }() // resolves at commit, leadership loss or shutdown
	select {
	case err = <-errCh:
	case <-ctx.Done():
		return nil, n.ctxErr(ctx)
	}
	n.metrics.commitLatency.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrNotLeader):
		_, id := n.raft.LeaderWithID()
		return nil, &NotLeaderError{Leader: string(id)}
	case errors.Is(err, raft.ErrRaftShutdown):
		return nil, ErrShuttingDown
	case errors.Is(err, raft.ErrLeadershipLost):
		return nil, fmt.Errorf("%w: leadership lost while committing; the write may or may not have been applied", ErrNoQuorum)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return nil, fmt.Errorf("%w: %v", ErrNoQuorum, err)
	default:
		return nil, fmt.Errorf("%w: %v", ErrNoQuorum, err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok || res == nil {
		return nil, fmt.Errorf("apply: state machine returned %T, not *fsm.Result", f.Response())
	}
	return res, nil
}

// forwardApply sends cmd to the leader; the leader stamps the time.
func (n *Node) forwardApply(ctx context.Context, leaderAddr string, cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	start := time.Now()
	var resp applyResponse
	err = n.call(ctx, "POST", leaderAddr, "/v1/apply", data, &resp)
	n.metrics.commitLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	if resp.Result == nil {
		return nil, fmt.Errorf("forwarded apply: leader returned no result")
	}
	return decodeResult(resp.Result)
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
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		leaderAddr, leaderID, err := n.waitLeader(ctx)
		if err != nil {
			return err
		}
		var idx uint64
		if leaderID == n.cfg.Name {
			idx, err = n.leaderReadIndex(ctx)
		} else {
			var resp readIndexResponse
			err = n.call(ctx, "GET", leaderAddr, "/v1/readindex", nil, &resp)
			idx = resp.Index
		}
		if err != nil {
			if retryable(err) {
				lastErr = err
				continue
			}
			return n.mapErr(ctx, err)
		}
		if err := n.waitApplied(ctx, idx); err != nil {
			return n.mapErr(ctx, err)
		}
		return nil
	}
	return fmt.Errorf("%w: %v", ErrNoQuorum, lastErr)
}

// leaderReadIndex: the commit index, once leadership is verified with a
// quorum. A new leader first commits an entry of its own term (the barrier
// run by the leader loop) so its commit index covers every earlier write.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if n.closing.Load() {
		return 0, ErrShuttingDown
	}
	if n.raft.State() != raft.Leader {
		_, id := n.raft.LeaderWithID()
		return 0, &NotLeaderError{Leader: string(id)}
	}
	if term := n.currentTerm(); n.leaderReadyTerm.Load() != term {
		if err := n.futureErr(ctx, n.raft.Barrier(n.cfg.ApplyTimeout)); err != nil {
			return 0, n.raftErr(err)
		}
	}
	idx := n.raft.CommitIndex()
	if err := n.futureErr(ctx, n.raft.VerifyLeader()); err != nil {
		return 0, n.raftErr(err)
	}
	return idx, nil
}

func (n *Node) currentTerm() uint64 {
	var t uint64
	_, _ = fmt.Sscan(n.raft.Stats()["term"], &t)
	return t
}

func (n *Node) futureErr(ctx context.Context, f raft.Future) error {
	errCh := make(chan error, 1)
	go func() { errCh <- f.Error() }()
	select {
	case err := <-errCh:
		return err
	case <-ctx.Done():
		return n.ctxErr(ctx)
	}
}

func (n *Node) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		_, id := n.raft.LeaderWithID()
		return &NotLeaderError{Leader: string(id)}
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShuttingDown
	case errors.Is(err, ErrNoQuorum), errors.Is(err, context.Canceled):
		return err
	default:
		return fmt.Errorf("%w: %v", ErrNoQuorum, err)
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
			return n.ctxErr(ctx)
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
	first, _ := n.store.FirstIndex()
	for i := applied + 1; i <= target; i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
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
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		leaderAddr, leaderID, err := n.waitLeader(ctx)
		if err != nil {
			return err
		}
		if leaderID == n.cfg.Name {
			err = n.removeOnLeader(name)
		} else {
			err = n.call(ctx, "POST", leaderAddr, "/v1/remove?name="+urlQueryEscape(name), nil, nil)
		}
		if err != nil && retryable(err) {
			lastErr = err
			continue
		}
		return n.mapErr(ctx, err)
	}
	return fmt.Errorf("%w: %v", ErrNoQuorum, lastErr)
}

func (n *Node) removeOnLeader(name string) error {
	if n.raft.State() != raft.Leader {
		_, id := n.raft.LeaderWithID()
		return &NotLeaderError{Leader: string(id)}
	}
	cfg, err := n.configuration()
	if err != nil {
		return n.raftErr(err)
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
	if err := n.raft.RemoveServer(raft.ServerID(name), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return n.raftErr(err)
	}
	n.log.Info("removed replica from the cluster", "member", name)
	return nil
}
