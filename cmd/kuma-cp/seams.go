package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/xds"
)

// xdsCluster adapts the replica (cluster.Node) to what the xds package
// needs of it (xds.Cluster), which xds declares without importing cluster.
type xdsCluster struct{ *cluster.Node }

var _ xds.Cluster = xdsCluster{}

// Apply is cluster.Node.Apply, returning once this replica's state shows
// the write (xds reads it right after), with a command that not every
// replica supports yet reported as xds.ErrUnsupported.
func (c xdsCluster) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	res, err := c.Node.Apply(ctx, cmd)
	if errors.Is(err, cluster.ErrProtocolVersion) {
		err = fmt.Errorf("%w: %w", xds.ErrUnsupported, err)
	}
	if err == nil {
		if werr := c.Node.WaitVisible(ctx); werr != nil {
			return nil, fmt.Errorf("%w: committed as entry %d, not yet applied here: %w", cluster.ErrOutcomeUnknown, res.Index, werr)
		}
	}
	return res, err
}

// Members lists the replicas gossip knows, as xds.Member.
func (c xdsCluster) Members() []xds.Member {
	ms := c.Node.Members()
	out := make([]xds.Member, len(ms))
	for i, m := range ms {
		out[i] = xds.Member{Name: m.Name, Instance: m.Instance, APIAddr: m.APIAddr,
			XDSAddr: m.XDSAddr, Version: m.Version, Alive: m.Alive}
	}
	return out
}
