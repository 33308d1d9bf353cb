package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// listener is one bound listener (or one that failed to bind). It keeps its
// socket for its whole life: a new address is a new listener.
type listener struct {
	p       *Proxy
	name    string
	addr    string // as configured
	bound   string // as bound (the actual port of port 0)
	ln      net.Listener
	bindErr error
	route   atomic.Pointer[route]

	total, noCluster, noEndpoint, connectFailed atomic.Uint64
	bytesIn, bytesOut                           atomic.Uint64

	stopOnce  sync.Once
	stopCh    chan struct{} // closed when the listener stops accepting
	drainedCh chan struct{} // closed once it stopped accepting and its last connection ended

	mu struct {
		sync.Mutex
		conns      map[*conn]struct{}
		accepting  bool // the accept loop runs
		draining   bool
		closingAll bool // closeAll was called: connections accepted from now on are closed at once
		drained    bool
	}
}

// bind makes the listener of spec, bound or with its bind error.
func (p *Proxy) bind(spec *listenerSpec, rt *route) *listener {
	l := &listener{p: p, name: spec.name, addr: spec.addr, bound: spec.addr,
		stopCh: make(chan struct{}), drainedCh: make(chan struct{})}
	l.mu.conns = map[*conn]struct{}{}
	l.route.Store(rt)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", spec.addr)
	if err != nil {
		l.bindErr = fmt.Errorf("listener %q: bind %s: %w", spec.name, spec.addr, err)
		p.log.Warn("listener failed to bind", "listener", spec.name, "address", spec.addr, "err", err)
		return l
	}
	l.ln, l.bound = ln, ln.Addr().String()
	l.mu.accepting = true
	p.log.Info("listener bound", "listener", spec.name, "address", l.bound, "direction", rt.dir)
	return l
}

func (l *listener) runAccept() {
	defer l.p.wg.Done()
	defer l.acceptDone()
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.p.log.Warn("accept failed", "listener", l.name, "address", l.bound, "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.stopCh:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		l.total.Add(1)
		c := l.p.newConn(l, nc)
		if !l.add(c) {
			nc.Close()
			continue
		}
		l.p.wg.Add(1)
		go l.p.runConn(c, l.route.Load())
	}
}

func (l *listener) stopAccepting() {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.mu.draining = true
		l.mu.Unlock()
		close(l.stopCh)
		if l.ln != nil {
			l.ln.Close()
		} else {
			l.acceptDone()
		}
	})
}

func (l *listener) acceptDone() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.accepting = false
	l.checkDrainedLocked()
}

func (l *listener) checkDrainedLocked() {
	if l.mu.draining && !l.mu.accepting && len(l.mu.conns) == 0 && !l.mu.drained {
		l.mu.drained = true
		close(l.drainedCh)
	}
}

// add tracks c; false if the listener is closing every connection.
func (l *listener) add(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closingAll {
		return false
	}
	l.mu.conns[c] = struct{}{}
	return true
}

func (l *listener) remove(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.mu.conns, c)
	l.checkDrainedLocked()
}

// closeAll closes every connection and returns how many there were.
func (l *listener) closeAll() int {
	l.mu.Lock()
	l.mu.closingAll = true
	conns := make([]*conn, 0, len(l.mu.conns))
	for c := range l.mu.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return len(conns)
}

func (l *listener) activeCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mu.conns)
}

func (l *listener) status() ListenerStatus {
	l.mu.Lock()
	active, draining := len(l.mu.conns), l.mu.draining
	l.mu.Unlock()
	s := ListenerStatus{
		Name: l.name, Address: l.bound, Direction: l.route.Load().dir,
		Active: int64(active), Total: l.total.Load(),
		NoCluster: l.noCluster.Load(), NoEndpoint: l.noEndpoint.Load(), ConnectFailed: l.connectFailed.Load(),
		BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(),
		Draining: draining,
	}
	s.Failed = s.NoCluster + s.NoEndpoint + s.ConnectFailed
	if l.bindErr != nil {
		s.Error = l.bindErr.Error()
	}
	return s
}
