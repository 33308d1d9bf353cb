package cluster

import (
	"context"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/kuma-ha/kuma-ha/fsm"
)

// StateMachine is what the cluster needs from the replicated state. *fsm.FSM
// provides it through fsmState; tests may use anything else.
type StateMachine interface {
	// Apply applies one command entry; deterministic; rejections are Result.Err.
	Apply(index uint64, data []byte) *fsm.Result
	// AdvanceIndex records a raft entry that is not a command (configuration change).
	AdvanceIndex(index uint64)
	Snapshot() StateSnapshot
	Restore(r io.Reader) error
	AppliedIndex() uint64
	WaitApplied(ctx context.Context, index uint64) error
}

// StateSnapshot is an unchanging view of the state written out by Persist.
type StateSnapshot interface {
	WriteTo(w io.Writer) (int64, error)
	Release()
}

// fsmState adapts *fsm.FSM to StateMachine.
type fsmState struct{ *fsm.FSM }

func (s fsmState) Snapshot() StateSnapshot { return s.FSM.Snapshot() }

// raftFSM adapts a StateMachine to raft.FSM. It also implements
// raft.ConfigurationStore so configuration entries advance AppliedIndex.
// No-op and barrier entries never reach the FSM (hashicorp/raft drops them);
// waitApplied accounts for that.
type raftFSM struct{ sm StateMachine }

var (
	_ raft.FSM                = raftFSM{}
	_ raft.ConfigurationStore = raftFSM{}
)

func (f raftFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		f.sm.AdvanceIndex(l.Index)
		return nil
	}
	return f.sm.Apply(l.Index, l.Data)
}

func (f raftFSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.sm.AdvanceIndex(index)
}

func (f raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return fsmSnapshot{f.sm.Snapshot()}, nil
}

func (f raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.sm.Restore(rc); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	return nil
}

type fsmSnapshot struct{ s StateSnapshot }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot: close sink: %w", err)
	}
	return nil
}

func (s fsmSnapshot) Release() { s.s.Release() }
