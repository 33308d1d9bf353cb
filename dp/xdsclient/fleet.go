package xdsclient

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// maxRecvMsgSize bounds one xDS response (gRPC's default, 4 MiB, is too
// small for a proxy with many outbounds).
const maxRecvMsgSize = 64 << 20

// connectTimeout bounds a connection's TCP and HTTP/2 handshake.
const connectTimeout = 5 * time.Second

// Default keepalive: a replica that vanished without closing the
// connection is noticed within Time+Timeout.
const (
	DefaultKeepaliveTime    = 30 * time.Second
	DefaultKeepaliveTimeout = 10 * time.Second
)

func dialOptions(ka keepalive.ClientParameters) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		// Notice a replica that vanished without closing the connection
		// (the server permits pings every 5s or more).
		grpc.WithKeepaliveParams(ka),
		// A replica that accepts TCP but does not answer (paused, overloaded)
		// fails the stream after this, and the client tries another.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: connectTimeout}),
	}
}

// dial opens a lazy connection: it connects when the first stream starts.
func dial(addr string, ka keepalive.ClientParameters) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, dialOptions(ka)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

// Fleet is shared by many clients in one process (the load tool): their
// streams to a replica share gRPC connections, StreamsPerConn each, and a
// resource that one client decoded and validated is reused by the others
// that receive the same bytes. A client alone needs no Fleet.
type Fleet struct {
	streamsPerConn int
	decode         *decodeCache

	mu     sync.Mutex
	conns  map[string][]*sharedConn // by address
	closed bool
}

type sharedConn struct {
	cc    *grpc.ClientConn
	users int
}

// NewFleet returns a Fleet putting up to streamsPerConn streams on one
// gRPC connection (at least 1).
func NewFleet(streamsPerConn int) *Fleet {
	return &Fleet{streamsPerConn: max(1, streamsPerConn), decode: newDecodeCache(4096), conns: map[string][]*sharedConn{}}
}

// acquire returns a connection to addr with room for one more stream and
// the function that gives the room back. A connection nobody uses is closed.
func (f *Fleet) acquire(addr string) (*grpc.ClientConn, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, errors.New("xdsclient: fleet closed")
	}
	var sc *sharedConn
	for _, c := range f.conns[addr] {
		if c.users < f.streamsPerConn {
			sc = c
			break
		}
	}
	if sc == nil {
		cc, err := dial(addr, keepalive.ClientParameters{Time: DefaultKeepaliveTime, Timeout: DefaultKeepaliveTimeout})
		if err != nil {
			return nil, nil, err
		}
		sc = &sharedConn{cc: cc}
		f.conns[addr] = append(f.conns[addr], sc)
	}
	sc.users++
	var once sync.Once
	return sc.cc, func() { once.Do(func() { f.release(addr, sc) }) }, nil
}

func (f *Fleet) release(addr string, sc *sharedConn) {
	f.mu.Lock()
	sc.users--
	if sc.users > 0 || f.closed {
		f.mu.Unlock()
		return
	}
	list := f.conns[addr]
	for i, c := range list {
		if c == sc {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(f.conns, addr)
	} else {
		f.conns[addr] = list
	}
	f.mu.Unlock()
	_ = sc.cc.Close()
}

// Close closes every connection; the clients' streams on them end. Call it
// after the clients' Run has returned.
func (f *Fleet) Close() error {
	f.mu.Lock()
	var all []*sharedConn
	for _, list := range f.conns {
		all = append(all, list...)
	}
	f.conns, f.closed = map[string][]*sharedConn{}, true
	f.mu.Unlock()
	var errs []error
	for _, sc := range all {
		if err := sc.cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
