package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"

	"github.com/hashicorp/raft"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// roleName is the ReplicaStatus role of a raft state.
func roleName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "unknown"
	}
}

func suffrageName(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "voter"
	}
	return "nonvoter"
}

// lastLog returns the last log index and term.
func (n *Node) lastLog() (index, term uint64) {
	st := n.raft.Stats()
	index, _ = strconv.ParseUint(st["last_log_index"], 10, 64)
	term, _ = strconv.ParseUint(st["last_log_term"], 10, 64)
	return index, term
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// newInstanceID returns 16 random hex digits.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}
