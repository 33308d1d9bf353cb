package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// env is what a Node needs from the outside world: where it listens, how it
// dials, Raft's transport, gossip's transport and its stores. Production uses
// tcpEnv (TCP, raft-boltdb and file snapshots under DataDir); the in-memory
// test harness replaces every part so that whole clusters run in one process.
type env struct {
	// listen opens the Raft+RPC port (the mux sits on it).
	listen func(addr string) (net.Listener, error)
	// dial connects to a peer's Raft+RPC port. A failure to connect must be
	// a *net.OpError with Op "dial": the caller then knows nothing was sent.
	dial func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)
	// raftTransport, when set, replaces the network transport over the mux;
	// addr is this replica's advertised Raft address.
	raftTransport func(addr string) raft.Transport
	// gossipTransport, when set, replaces memberlist's UDP/TCP transport.
	gossipTransport func() memberlist.Transport
	openStores      func(dir string, log hclog.Logger) (*stores, error)
}

// stores are a replica's Raft log, stable store and snapshots.
type stores struct {
	log    raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	close  func() error
}

func tcpEnv() *env {
	return &env{
		listen: func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) },
		dial: func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			return d.DialContext(ctx, "tcp", addr)
		},
		openStores: openDiskStores,
	}
}

// openDiskStores opens raft.db (log and stable store, fsync on every
// append) and the snapshot directory under dir.
func openDiskStores(dir string, log hclog.Logger) (*stores, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, "raft.db")
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path: path,
		// A second process on the same data dir must fail, not hang.
		BoltOptions: boltOptions(),
	})
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, log.Named("snapshots"))
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	return &stores{log: bolt, stable: bolt, snaps: snaps, close: bolt.Close}, nil
}
