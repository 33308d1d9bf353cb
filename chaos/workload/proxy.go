package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/check"
)

// Caller is a proxy the traffic goes through: a caller proxy's outbound
// listener, which balances over the endpoints of the echo service.
type Caller struct {
	Name string // the proxy (Dataplane) name
	Addr string // host:port of its outbound listener
}

// ProxyOptions configure the proxy traffic workload.
type ProxyOptions struct {
	// Interval is each caller's mean pause between requests; 0 means 40ms.
	Interval time.Duration
	// Timeout bounds one request (connect, write, echo); 0 means 2s.
	Timeout time.Duration
	// MaxRequests bounds the requests of the whole run; 0 means 200000.
	MaxRequests int
}

func (o *ProxyOptions) defaults() {
	if o.Interval <= 0 {
		o.Interval = 40 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 200000
	}
}

// ProxyTraffic sends TCP requests through caller proxies to an echo
// service behind callee proxies: one new connection per request, a short
// unique payload, and the exact echo back within the timeout. Each request
// is a check.ProxyRequest for the proxy-traffic checker.
type ProxyTraffic struct {
	opts    ProxyOptions
	callers []Caller

	mu struct {
		sync.Mutex
		reqs   []check.ProxyRequest
		issued int
		failed int
	}
}

var _ Traffic = (*ProxyTraffic)(nil)

// NewProxyTraffic returns the workload for the given callers.
func NewProxyTraffic(callers []Caller, opts ProxyOptions) *ProxyTraffic {
	opts.defaults()
	return &ProxyTraffic{opts: opts, callers: append([]Caller(nil), callers...)}
}

// Name is "proxy".
func (w *ProxyTraffic) Name() string { return "proxy" }

// Run starts one sender per caller and waits for them. A request in flight
// when ctx ends completes (bounded by the timeout) and is recorded.
func (w *ProxyTraffic) Run(ctx context.Context, env Env) error {
	if env.Recorder == nil {
		return errors.New("proxy traffic: no recorder")
	}
	var wg sync.WaitGroup
	for i, c := range w.callers {
		wg.Go(func() { w.runCaller(ctx, env, i, c) })
	}
	wg.Wait()
	return nil
}

// Final does nothing: proxy traffic has no state to read back.
func (w *ProxyTraffic) Final(context.Context, Env) error { return nil }

// Requests returns every request recorded so far, in completion order.
func (w *ProxyTraffic) Requests() []check.ProxyRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]check.ProxyRequest(nil), w.mu.reqs...)
}

// Counts returns how many requests were recorded and how many failed.
func (w *ProxyTraffic) Counts() (total, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mu.reqs), w.mu.failed
}

func (w *ProxyTraffic) take() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.issued >= w.opts.MaxRequests {
		return false
	}
	w.mu.issued++
	return true
}

func (w *ProxyTraffic) add(r check.ProxyRequest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.reqs = append(w.mu.reqs, r)
	if !r.OK {
		w.mu.failed++
	}
}

func (w *ProxyTraffic) runCaller(ctx context.Context, env Env, id int, c Caller) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "proxy-traffic", "proxy", c.Name)
	rng := rand.New(rand.NewPCG(env.Seed, 0x70726f7879+uint64(id)))
	failing := false
	for seq := 1; ctx.Err() == nil && w.take(); seq++ {
		payload := fmt.Sprintf("%s #%d %016x\n", c.Name, seq, rng.Uint64())
		// A request in flight finishes even when ctx ends.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Timeout)
		invoke := env.Recorder.Now()
		err := Echo(rctx, c.Addr, []byte(payload))
		complete := env.Recorder.Now()
		cancel()
		r := check.ProxyRequest{Proxy: c.Name, Invoke: invoke, Complete: complete, OK: err == nil}
		if err != nil {
			r.Err = err.Error()
		}
		w.add(r)
		// Log changes, not every request.
		if (err != nil) != failing {
			failing = err != nil
			if failing {
				log.Warn("proxy traffic failing", "at", time.Duration(invoke), "err", err)
			} else {
				log.Info("proxy traffic succeeding again", "at", time.Duration(invoke))
			}
		}
		pause := w.opts.Interval/2 + time.Duration(rng.Int64N(int64(w.opts.Interval)))
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// Echo opens a connection to addr, writes payload and reads it back: nil
// when exactly payload came back before ctx's deadline. It does not
// half-close: it reads as many bytes as it wrote, then closes.
func Echo(ctx context.Context, addr string, payload []byte) error {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Close at once when ctx ends without a deadline (^C).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write(payload); err != nil {
		return fmt.Errorf("write to %s: %w", addr, err)
	}
	got := make([]byte, len(payload))
	n, err := io.ReadFull(conn, got)
	if err != nil {
		return fmt.Errorf("read echo from %s (%d of %d bytes): %w", addr, n, len(payload), err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo from %s differs: sent %q, got %q", addr, payload, got)
	}
	return nil
}

// EchoServer is the application behind the callee proxies: a TCP server on
// 127.0.0.1 that writes back whatever it reads, until the client closes.
type EchoServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		closed bool
		served int
	}
}

// StartEchoServer listens on addr ("127.0.0.1:0" for any free port) and
// serves until Close.
func StartEchoServer(addr string) (*EchoServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("echo server: %w", err)
	}
	s := &EchoServer{ln: ln}
	s.mu.conns = map[net.Conn]struct{}{}
	s.wg.Go(s.runAccept)
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *EchoServer) Addr() string { return s.ln.Addr().String() }

// Port is the port the server listens on.
func (s *EchoServer) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Served counts the connections accepted so far.
func (s *EchoServer) Served() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.served
}

func (s *EchoServer) runAccept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.mu.conns[conn] = struct{}{}
		s.mu.served++
		s.mu.Unlock()
		s.wg.Go(func() { s.runEcho(conn) })
	}
}

func (s *EchoServer) runEcho(conn net.Conn) {
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.mu.conns, conn)
		s.mu.Unlock()
	}()
	// A client that vanishes without closing would hold this goroutine
	// forever; no request of the workload lasts this long.
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	_, _ = io.Copy(conn, conn)
}

// Close stops accepting, closes every open connection and waits for the
// server's goroutines. Idempotent.
func (s *EchoServer) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.mu.closed = true
	for c := range s.mu.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}
