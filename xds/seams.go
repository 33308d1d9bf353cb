package xds

// The seams of the xds package: what it needs from the replicated state and
// from the replica it runs on, declared here so that xds depends on neither
// *fsm.FSM nor the cluster package (cmd/kuma-cp wires the real ones).

import (
	"errors"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// State is the read-only view of the replicated state that xds serves
// from; *fsm.FSM implements it.
type State interface {
	Read(fn func(v fsm.View))
	Get(k resource.Key) (*resource.Resource, bool)
	List(t resource.Type, mesh string) []*resource.Resource
	AppliedIndex() uint64
	Subscribe() *fsm.Subscription
}

var _ State = (*fsm.FSM)(nil)

// Member is one replica as the cluster's membership (gossip) sees it.
type Member struct {
	Name     string
	Instance string // changes every time the replica process starts
	APIAddr  string
	XDSAddr  string
	Version  string
	Alive    bool // alive or suspect; false once it was declared dead or left
}

// ErrUnsupported is what an error of Cluster.Apply wraps when not every
// replica can apply the command yet (a rolling upgrade is not finished):
// the command was not proposed, and retrying before the upgrade ends is
// pointless.
var ErrUnsupported = errors.New("command not supported by every replica yet")
