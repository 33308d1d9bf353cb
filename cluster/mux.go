package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The first byte of every connection to RaftAddr says who it is for. A TLS
// variant would add its own byte values and wrap the conn after the byte.
const (
	muxRaft byte = 0x01
	muxRPC  byte = 0x02
)

// muxFirstByteTimeout bounds how long an accepted connection may stay silent.
const muxFirstByteTimeout = 5 * time.Second

// mux accepts on one TCP listener and hands each connection to the raft or
// the RPC listener according to its first byte.
type mux struct {
	ln     net.Listener
	log    *slog.Logger
	raftLn *chanListener
	rpcLn  *chanListener
	doneCh chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

func newMux(ln net.Listener, advertise net.Addr, log *slog.Logger) *mux {
	m := &mux{ln: ln, log: log, doneCh: make(chan struct{})}
	m.raftLn = newChanListener(advertise, m.doneCh)
	m.rpcLn = newChanListener(advertise, m.doneCh)
	return m
}

// run accepts until close; owned by the mux, stopped by close.
func (m *mux) run() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			conn, err := m.ln.Accept()
			if err != nil {
				select {
				case <-m.doneCh:
					return
				default:
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				m.log.Warn("accept failed", "err", err)
				select {
				case <-time.After(50 * time.Millisecond):
				case <-m.doneCh:
					return
				}
				continue
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.dispatch(conn)
			}()
		}
	}()
}

func (m *mux) dispatch(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(muxFirstByteTimeout))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		_ = conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var target *chanListener
	switch b[0] {
	case muxRaft:
		target = m.raftLn
	case muxRPC:
		target = m.rpcLn
	default:
		m.log.Debug("connection with unknown protocol byte", "byte", b[0], "remote", conn.RemoteAddr().String())
		_ = conn.Close()
		return
	}
	select {
	case target.connCh <- conn:
	case <-m.doneCh:
		_ = conn.Close()
	}
}

func (m *mux) close() {
	m.once.Do(func() {
		close(m.doneCh)
		_ = m.ln.Close()
	})
	m.wg.Wait()
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr   net.Addr
	connCh chan net.Conn
	doneCh <-chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr, doneCh <-chan struct{}) *chanListener {
	return &chanListener{addr: addr, connCh: make(chan net.Conn), doneCh: doneCh, closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.connCh:
		return c, nil
	case <-l.doneCh:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr is the advertised address: raft's NetworkTransport uses it as this
// server's address.
func (l *chanListener) Addr() net.Addr { return l.addr }

// streamLayer is raft's transport over the mux.
type streamLayer struct {
	*chanListener
	dial func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)
}

var _ raft.StreamLayer = streamLayer{}

func (s streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialMux(context.Background(), s.dial, string(address), timeout, muxRaft)
}

// dialMux connects to a peer's Raft+RPC port and names the protocol.
func dialMux(ctx context.Context, dial func(context.Context, string, time.Duration) (net.Conn, error), addr string, timeout time.Duration, proto byte) (net.Conn, error) {
	conn, err := dial(ctx, addr, timeout)
	if err != nil {
		return nil, err
	}
	if timeout > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("write protocol byte to %s: %w", addr, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// advertisedAddr implements net.Addr for host:port strings.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
