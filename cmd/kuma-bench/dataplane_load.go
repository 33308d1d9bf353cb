package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes and bounds of the dataplane load. Every loop stops at its phase's
// duration or at its count, whichever comes first; every connection has a
// deadline, so a stalled proxy cannot hang the benchmark.
const (
	dpRequestSize     = 64       // bytes of a request and of its response
	dpChunkSize       = 64 << 10 // bytes per write of a bulk transfer
	dpMaxBytesPerConn = 64 << 30 // bulk transfer: per connection
	dpMaxRoundTrips   = 2_000_000
	dpMaxNewConns     = 100_000 // per phase: each leaves sockets in TIME_WAIT
	dpDialTimeout     = 2 * time.Second
	dpRequestTimeout  = 5 * time.Second // one request on a new connection, dial included
	dpGrace           = 10 * time.Second
	dpWarmUp          = 200 // requests before a latency phase, not measured
)

// tputResult is a bulk transfer over some connections.
type tputResult struct {
	Conns   int
	Bytes   int64 // confirmed by the app
	Elapsed time.Duration
	Errors  map[string]int
}

// MBps is the throughput in MB/s (10^6 bytes).
func (r *tputResult) MBps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// latResult is request/response round trips.
type latResult struct {
	Concurrency int
	Elapsed     time.Duration
	Latencies   []time.Duration // sorted
	Errors      map[string]int
}

func (r *latResult) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Elapsed.Seconds()
}

func (r *latResult) errorCount() int { return countErrors(r.Errors) }

func countErrors(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// abortOnCancel makes every blocked call on c return when ctx ends (^C); the
// returned stop undoes that.
func abortOnCancel(ctx context.Context, c net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// measureThroughput sends bulk data to the app's sink over conns
// connections for d, then half-closes each and waits for the app's count of
// the bytes it received. Throughput is the confirmed bytes over the time
// from the start to the last count.
func measureThroughput(ctx context.Context, addr string, conns int, d time.Duration) (*tputResult, error) {
	res := &tputResult{Conns: conns, Errors: map[string]int{}}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total atomic.Int64
	)
	fail := func(err error) {
		mu.Lock()
		res.Errors[errorKind(err)]++
		mu.Unlock()
	}
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		wg.Go(func() {
			n, err := bulkSend(ctx, addr, deadline)
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
			total.Add(n)
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Bytes = total.Load()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if res.Bytes == 0 {
		return res, fmt.Errorf("throughput over %d connections to %s: no byte confirmed: %v", conns, addr, res.Errors)
	}
	return res, nil
}

// bulkSend is one connection of measureThroughput: the bytes the app
// confirmed, which must be the bytes sent.
func bulkSend(ctx context.Context, addr string, until time.Time) (int64, error) {
	dctx, cancel := context.WithTimeout(ctx, dpDialTimeout)
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	defer abortOnCancel(ctx, c)()
	if err := c.SetDeadline(until.Add(dpGrace)); err != nil {
		return 0, err
	}
	chunk := make([]byte, dpChunkSize)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	chunk[0] = appModeSink
	n, err := c.Write(chunk)
	sent := int64(n) - 1 // the mode byte is not data
	if err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	chunk[0] = 0
	for time.Now().Before(until) && sent < dpMaxBytesPerConn {
		n, err := c.Write(chunk)
		sent += int64(n)
		if err != nil {
			return 0, fmt.Errorf("write after %d bytes: %w", sent, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, fmt.Errorf("close write: %w", err)
	}
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return 0, fmt.Errorf("read the app's count after %d bytes: %w", sent, err)
	}
	if got != sent {
		return 0, fmt.Errorf("the app got %d bytes, %d were sent", got, sent)
	}
	return sent, nil
}

// request returns the i-th request: its bytes differ from one request to
// the next, so that a response mixed up with another is caught.
func fillRequest(req []byte, i uint64) {
	for j := range req {
		req[j] = byte(i + uint64(j)*7)
	}
	binary.BigEndian.PutUint64(req, i)
}

// measurePersistent sends dpRequestSize-byte requests over one connection,
// each after the previous answer, for d (and at most dpMaxRoundTrips).
// dpWarmUp round trips go first and are not measured; mark is called when
// the measured part starts.
func measurePersistent(ctx context.Context, addr string, d time.Duration, mark func()) (*latResult, error) {
	dctx, cancel := context.WithTimeout(ctx, dpDialTimeout)
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	defer abortOnCancel(ctx, c)()
	if err := c.SetDeadline(time.Now().Add(d + dpGrace)); err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{appModeEcho}); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	req, resp := make([]byte, dpRequestSize), make([]byte, dpRequestSize)
	roundTrip := func(i uint64) error {
		fillRequest(req, i)
		if _, err := c.Write(req); err != nil {
			return fmt.Errorf("request %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return fmt.Errorf("request %d: read: %w", i, err)
		}
		if !bytes.Equal(req, resp) {
			return fmt.Errorf("request %d: the answer is not its echo", i)
		}
		return nil
	}
	var i uint64
	for ; i < dpWarmUp; i++ {
		if err := roundTrip(i); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	res := &latResult{Concurrency: 1, Errors: map[string]int{}, Latencies: make([]time.Duration, 0, 1<<16)}
	mark()
	start := time.Now()
	deadline := start.Add(d)
	for n := 0; n < dpMaxRoundTrips; n++ {
		t0 := time.Now()
		if !t0.Before(deadline) {
			break
		}
		if err := roundTrip(i); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		res.Latencies = append(res.Latencies, time.Since(t0))
		i++
	}
	res.Elapsed = time.Since(start)
	slices.Sort(res.Latencies)
	return res, nil
}

// measureNewConns runs concurrency workers, each sending one request per new
// connection (dial, request, answer, close) until d has passed or maxN
// requests were sent in total. The latency of a request includes its dial.
// dpWarmUp requests go first and are not measured; mark is called when the
// measured part starts.
func measureNewConns(ctx context.Context, addr string, concurrency int, d time.Duration, maxN int, mark func()) (*latResult, error) {
	for i := range dpWarmUp {
		if err := newConnRequest(ctx, addr, uint64(i)); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	var (
		next   atomic.Uint64
		wg     sync.WaitGroup
		perLat = make([][]time.Duration, concurrency)
		perErr = make([]map[string]int, concurrency)
	)
	mark()
	start := time.Now()
	deadline := start.Add(d)
	for w := range concurrency {
		perErr[w] = map[string]int{}
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				n := next.Add(1) - 1
				if n >= uint64(maxN) {
					return
				}
				t0 := time.Now()
				err := newConnRequest(ctx, addr, dpWarmUp+n)
				lat := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					perErr[w][errorKind(err)]++
					continue
				}
				perLat[w] = append(perLat[w], lat)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &latResult{Concurrency: concurrency, Elapsed: time.Since(start), Errors: map[string]int{}}
	for w := range concurrency {
		res.Latencies = append(res.Latencies, perLat[w]...)
		for k, c := range perErr[w] {
			res.Errors[k] += c
		}
	}
	slices.Sort(res.Latencies)
	if len(res.Latencies) == 0 {
		return res, fmt.Errorf("new connections to %s: no request succeeded: %v", addr, res.Errors)
	}
	return res, nil
}

// newConnRequest sends request i on a new connection and checks the echo.
// The mode byte goes in the same write as the request: one segment.
func newConnRequest(ctx context.Context, addr string, i uint64) error {
	rctx, cancel := context.WithTimeout(ctx, dpRequestTimeout)
	defer cancel()
	dctx, dcancel := context.WithTimeout(rctx, dpDialTimeout)
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	dcancel()
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	if dl, ok := rctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	defer abortOnCancel(rctx, c)()
	var buf [1 + dpRequestSize]byte
	buf[0] = appModeEcho
	req := buf[1:]
	fillRequest(req, i)
	if _, err := c.Write(buf[:]); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	var resp [dpRequestSize]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read: closed before the answer: %w", err)
		}
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(req, resp[:]) {
		return errors.New("the answer is not the request's echo")
	}
	return nil
}
