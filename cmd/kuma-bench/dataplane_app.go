package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// cmdDPApp is the hidden subcommand that runs the application of the
// dataplane benchmark in its own process, so that its CPU is not the
// benchmark client's and can be measured apart.
const cmdDPApp = "__dp-app"

// The first byte a client sends on a connection to the app chooses what the
// app does with it.
const (
	appModeEcho = 'e' // answer every byte with the same byte
	appModeSink = 's' // read until EOF, then answer with the count (8 bytes, big endian)
)

// appBufferSize is the app's read buffer: large, so that the app is not what
// limits bulk transfer.
const appBufferSize = 64 << 10

// runDPApp serves the app on --addr (127.0.0.1 only) until SIGTERM or SIGINT.
// It prints "listening" once it accepts connections.
func runDPApp(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet(cmdDPApp, flag.ContinueOnError)
	addr := fs.String("addr", "", "127.0.0.1:PORT to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || host != "127.0.0.1" {
		fmt.Fprintf(os.Stderr, "%s: --addr must be 127.0.0.1:PORT, got %q\n", cmdDPApp, *addr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmdDPApp, err)
		return 1
	}
	app := startApp(ln)
	fmt.Fprintln(stdout, "listening on", ln.Addr())
	<-ctx.Done()
	app.Close()
	return 0
}

// appServer is the benchmark's application: echo or sink per connection.
type appServer struct {
	ln net.Listener
	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		closed bool
	}
}

func startApp(ln net.Listener) *appServer {
	a := &appServer{ln: ln}
	a.mu.conns = map[net.Conn]struct{}{}
	a.wg.Add(1)
	go a.runAccept()
	return a
}

// Addr is where the app listens.
func (a *appServer) Addr() string { return a.ln.Addr().String() }

func (a *appServer) runAccept() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient accept error (EMFILE...): the listener is still open
		}
		if !a.track(c) {
			c.Close()
			return
		}
		a.wg.Add(1)
		go a.runConn(c)
	}
}

func (a *appServer) track(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.closed {
		return false
	}
	a.mu.conns[c] = struct{}{}
	return true
}

func (a *appServer) runConn(c net.Conn) {
	defer a.wg.Done()
	defer func() {
		c.Close()
		a.mu.Lock()
		delete(a.mu.conns, c)
		a.mu.Unlock()
	}()
	buf := make([]byte, appBufferSize)
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return
	}
	switch buf[0] {
	case appModeEcho:
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	case appModeSink:
		var total int64
		for {
			n, err := c.Read(buf)
			total += int64(n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
		}
		_ = binary.Write(c, binary.BigEndian, total)
	}
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (a *appServer) Close() {
	a.mu.Lock()
	a.mu.closed = true
	for c := range a.mu.conns {
		c.Close()
	}
	a.mu.Unlock()
	a.ln.Close()
	a.wg.Wait()
}
