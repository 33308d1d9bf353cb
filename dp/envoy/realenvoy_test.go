package envoy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestRealEnvoy runs the engine with the Envoy on PATH: one inbound listener
// to a local echo server, traffic through it, status from Envoy's admin, a
// config Envoy rejects (logged, the rest keeps working), and the drain.
// Envoy is not installable everywhere; without it the test is skipped and
// the fake Envoy's tests are what cover the engine.
func TestRealEnvoy(t *testing.T) {
	bin, err := exec.LookPath("envoy")
	if err != nil {
		t.Skip("envoy is not on PATH")
	}
	echo := startEcho(t)
	inPort := freePort(t)
	cfg := generate(t, fmt.Sprintf(`type: Dataplane
mesh: default
name: echo-1
networking:
  address: 127.0.0.1
  inbound:
  - port: %d
    servicePort: %d
    tags: {kuma.io/service: echo}`, inPort, echo.Addr().(*net.TCPAddr).Port))

	log, logs := newLogCapture(t)
	e, err := New(Options{
		Binary: bin, NodeID: "default.echo-1", Cluster: "echo", AdminAddr: "127.0.0.1:0",
		Logger: log, WorkDir: t.TempDir(), DrainTime: 2 * time.Second, ExtraArgs: []string{"--concurrency", "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	shut := sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return e.Shutdown(ctx)
	})
	t.Cleanup(func() { _ = shut() })
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	start(t, e)

	inAddr := fmt.Sprintf("127.0.0.1:%d", inPort)
	waitFor(t, "an echo through Envoy", func() bool { return roundTrip(inAddr, "hello") == nil })
	waitFor(t, "Envoy to ACK every type", func() bool {
		info := e.Info()
		return len(info.Relay.Versions) == 3 && len(info.Relay.Acked) >= 2 &&
			info.Relay.Acked[TypeListener] == info.Relay.Versions[TypeListener] &&
			info.Relay.Acked[TypeCluster] == info.Relay.Versions[TypeCluster]
	})
	if logs.index(func(r logRecord) bool { return r.Attrs["component"] == "envoy" }) < 0 {
		t.Fatal("nothing of Envoy's output in the log")
	}

	// An open connection shows in the status.
	conn, err := net.Dial("tcp", inAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "open\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	name := "inbound:" + inAddr
	waitFor(t, "the connection in the status", func() bool {
		st := e.Status()
		return len(st.Listeners) == 1 && st.Listeners[0].Name == name && st.Listeners[0].Active >= 1 &&
			st.Listeners[0].Total >= 2 && st.Listeners[0].Error == ""
	})
	if st := e.Status(); len(st.Clusters) != 1 || len(st.Clusters[0].Endpoints) != 1 || st.Clusters[0].Endpoints[0].Active < 1 {
		t.Fatalf("status %+v", st)
	}

	// A listener Envoy rejects (a TCP proxy without a cluster): the NACK is
	// logged, the listener in use keeps serving.
	bad := proto.CloneOf(cfg.Listeners[name])
	bad.Name = "inbound:bad"
	tcp, err := anypb.New(&tcpv3.TcpProxy{StatPrefix: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	bad.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: tcp}
	withBad := cfg
	withBad.Listeners = map[string]*listenerv3.Listener{name: cfg.Listeners[name], bad.Name: bad}
	if err := e.Apply(withBad); err != nil {
		t.Fatal(err)
	}
	logs.waitLog(t, "the NACK", msgHas("Envoy rejected the config (NACK)"))
	if err := roundTrip(inAddr, "still"); err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}

	// Drain: the open connection holds Shutdown until it closes.
	done := make(chan error, 1)
	go func() { done <- shut() }()
	waitFor(t, "the drain", func() bool { return logs.index(msgHas("draining: Envoy's listeners stopped accepting")) >= 0 })
	if _, err := io.WriteString(conn, "during drain\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "during drain\n" {
		t.Fatalf("echo during the drain %q, %v", line, err)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if logs.index(msgHas("drained: no connection left")) < 0 {
		t.Fatal("no drain")
	}
}

// startEcho serves line echo on 127.0.0.1 until the test ends.
func startEcho(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

// freePort is a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// roundTrip sends one line on a new connection and expects it back.
func roundTrip(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSuffix(line, "\n") != msg {
		return fmt.Errorf("echo %q", line)
	}
	return nil
}
