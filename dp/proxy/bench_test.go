package proxy

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// benchServer serves every connection with handle until closed.
type benchServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startBenchServer(b *testing.B, handle func(net.Conn)) *benchServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &benchServer{ln: ln}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// sink reads until EOF and answers with the byte count.
func sink(c net.Conn) {
	n, _ := io.Copy(io.Discard, c)
	binary.Write(c, binary.BigEndian, n)
}

// echo answers every read with the same bytes, until EOF.
func echo(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// benchProxy puts a proxy with one outbound listener in front of server
// and returns the listener's address.
func benchProxy(b *testing.B, server string) string {
	p := New(Options{Logger: slog.New(slog.DiscardHandler)})
	b.Cleanup(func() { p.Shutdown(context.Background()) })
	// The default idle timeout (1h), as generated: idle tracking is on.
	l := tcpListener("out", 0, core.TrafficDirection_OUTBOUND, durationpb.New(time.Hour), "svc")
	if err := p.Apply(config(l, edsCluster("svc", time.Second), loadAssignment("svc", server))); err != nil {
		b.Fatal(err)
	}
	return mustListenerB(b, p, "out").Address
}

func mustListenerB(b *testing.B, p *Proxy, name string) ListenerStatus {
	for _, l := range p.Status().Listeners {
		if l.Name == name {
			return l
		}
	}
	b.Fatalf("no listener %q", name)
	return ListenerStatus{}
}

// targets runs f against the server directly and through the proxy.
func targets(b *testing.B, handle func(net.Conn), f func(b *testing.B, addr string)) {
	b.Run("direct", func(b *testing.B) {
		f(b, startBenchServer(b, handle).ln.Addr().String())
	})
	b.Run("proxied", func(b *testing.B) {
		f(b, benchProxy(b, startBenchServer(b, handle).ln.Addr().String()))
	})
}

// BenchmarkThroughput: bulk transfer over one connection, 64 KiB per op.
func BenchmarkThroughput(b *testing.B) {
	targets(b, sink, func(b *testing.B, addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		chunk := make([]byte, 64<<10)
		b.SetBytes(int64(len(chunk)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		var n int64
		if err := binary.Read(c, binary.BigEndian, &n); err != nil || n != int64(b.N*len(chunk)) {
			b.Fatalf("server got %d bytes, want %d: %v", n, b.N*len(chunk), err)
		}
	})
}

// BenchmarkRequestLatency: 64-byte request and response, over one
// connection and over a new connection each time; p50/p99 in µs.
func BenchmarkRequestLatency(b *testing.B) {
	const size = 64
	report := func(b *testing.B, lat []time.Duration) {
		slices.Sort(lat)
		q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
		b.ReportMetric(q(0.50), "p50-µs")
		b.ReportMetric(q(0.99), "p99-µs")
	}
	roundTrip := func(c net.Conn, req, resp []byte) error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		_, err := io.ReadFull(c, resp)
		return err
	}
	b.Run("persistent", func(b *testing.B) {
		targets(b, echo, func(b *testing.B, addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req, resp := make([]byte, size), make([]byte, size)
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := roundTrip(c, req, resp); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			report(b, lat)
		})
	})
	b.Run("new-connection", func(b *testing.B) {
		targets(b, echo, func(b *testing.B, addr string) {
			req, resp := make([]byte, size), make([]byte, size)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				err = roundTrip(c, req, resp)
				c.Close()
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			report(b, lat)
		})
	})
}
