// Package fsm is the replicated state machine: it decodes versioned log
// commands, applies them deterministically to an indexed in-memory store of
// resources, snapshots and restores that store, and feeds coalesced change
// batches to watchers.
//
// It must stay a pure function of (state, log entry): it reads no clock, no
// randomness and no environment (times come inside the entry, stamped by the
// proposer), does no network I/O and imports no package of ours other than
// fsm/resource. The only process-level effect is the default Options.OnFatal,
// which exits when an entry from a newer binary cannot be applied safely.
package fsm
