package backend

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// fakeDPEnv makes the test binary behave as a fake kuma-dp (see fakeDP).
const fakeDPEnv = "KUMA_CHAOS_FAKE_DP"

func TestMain(m *testing.M) {
	if os.Getenv(fakeDPEnv) != "" {
		os.Exit(fakeDP(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// installFakeDP writes dir/kuma-dp, a script that runs this test binary as
// a fake kuma-dp.
func installFakeDP(t *testing.T, dir string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\n%s=1 exec %q \"$@\"\n", fakeDPEnv, self)
	if err := os.WriteFile(filepath.Join(dir, "kuma-dp"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

type fakeDataplane struct {
	Name       string `json:"name"`
	Networking struct {
		Address string `json:"address"`
		Inbound []struct {
			Port        int               `json:"port"`
			ServicePort int               `json:"servicePort"`
			Tags        map[string]string `json:"tags"`
		} `json:"inbound"`
		Outbound []struct {
			Port int               `json:"port"`
			Tags map[string]string `json:"tags"`
		} `json:"outbound"`
	} `json:"networking"`
}

// fakeDP is a stand-in for `kuma-dp run` with the flags the harness
// passes: inbounds forward to their service port, and an outbound forwards
// to the inbounds of its service found in the other Dataplane files of the
// same directory (the fake's xDS). It answers /ready and /status on the
// admin address and exits 0 on SIGTERM.
func fakeDP(args []string) int {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(os.Stderr, "fake kuma-dp: want run")
		return 2
	}
	fs := flag.NewFlagSet("kuma-dp run", flag.ContinueOnError)
	cp := fs.String("cp-address", "", "")
	file := fs.String("dataplane-file", "", "")
	state := fs.String("state-dir", "", "")
	admin := fs.String("admin-addr", "", "")
	fs.String("log-level", "info", "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if !strings.HasPrefix(*cp, "grpc://") || *state == "" || *admin == "" {
		fmt.Fprintln(os.Stderr, "fake kuma-dp: missing flags")
		return 2
	}
	read := func(path string) (fakeDataplane, error) {
		var dp fakeDataplane
		b, err := os.ReadFile(path)
		if err == nil {
			err = yaml.Unmarshal(b, &dp)
		}
		return dp, err
	}
	dp, err := read(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake kuma-dp:", err)
		return 2
	}
	var listeners []net.Listener
	forward := func(port int, upstreams func() []string) error {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
		if err != nil {
			return err
		}
		listeners = append(listeners, ln)
		go func() {
			for n := 0; ; n++ {
				down, err := ln.Accept()
				if err != nil {
					return
				}
				ups := upstreams()
				if len(ups) == 0 {
					down.Close()
					continue
				}
				up, err := net.Dial("tcp", ups[n%len(ups)])
				if err != nil {
					down.Close()
					continue
				}
				go func() { _, _ = io.Copy(up, down); up.Close() }()
				go func() { _, _ = io.Copy(down, up); down.Close() }()
			}
		}()
		return nil
	}
	for _, in := range dp.Networking.Inbound {
		app := net.JoinHostPort("127.0.0.1", fmt.Sprint(in.ServicePort))
		if err := forward(in.Port, func() []string { return []string{app} }); err != nil {
			fmt.Fprintln(os.Stderr, "fake kuma-dp:", err)
			return 1
		}
	}
	for _, out := range dp.Networking.Outbound {
		service := out.Tags["kuma.io/service"]
		endpoints := func() []string {
			files, _ := filepath.Glob(filepath.Join(filepath.Dir(*file), "*.yaml"))
			var eps []string
			for _, f := range files {
				other, err := read(f)
				if err != nil {
					continue
				}
				for _, in := range other.Networking.Inbound {
					if in.Tags["kuma.io/service"] == service {
						eps = append(eps, net.JoinHostPort("127.0.0.1", fmt.Sprint(in.Port)))
					}
				}
			}
			return eps
		}
		if err := forward(out.Port, endpoints); err != nil {
			fmt.Fprintln(os.Stderr, "fake kuma-dp:", err)
			return 1
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(ProxyStatus{Node: "default." + dp.Name, Connected: true,
			Replica: strings.TrimPrefix(strings.Split(*cp, ",")[0], "grpc://"), ConfigVersion: json.RawMessage(`{"v":"1.a"}`)})
	})
	srv := &http.Server{Addr: *admin, Handler: mux}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	errCh := make(chan error, 1)
	go func() { errCh <- srv.ListenAndServe() }()
	fmt.Println("fake kuma-dp", dp.Name, "serving")
	select {
	case <-sig:
		fmt.Println("fake kuma-dp: SIGTERM, draining")
		_ = srv.Close()
		for _, ln := range listeners {
			ln.Close()
		}
		return 0
	case err := <-errCh:
		fmt.Fprintln(os.Stderr, "fake kuma-dp:", err)
		return 1
	}
}

// echoApp is the application behind the callees.
func echoApp(t *testing.T) (port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { _, _ = io.Copy(c, c); c.Close() })
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func echoThrough(addr, payload string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, payload); err != nil {
		return err
	}
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != payload {
		return fmt.Errorf("got %q", got)
	}
	return nil
}

func TestProxiesAgainstFakeDP(t *testing.T) {
	bin, work := t.TempDir(), t.TempDir()
	installFakeDP(t, bin)
	f, err := NewProxies(ProxyOptions{Pairs: 2, BinDir: bin, WorkDir: work, AppPort: echoApp(t), XDS: []string{"127.0.0.1:1", "127.0.0.1:2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if got := len(f.List()); got != 4 {
		t.Fatalf("%d proxies, want 4", got)
	}
	dp, err := os.ReadFile(filepath.Join(work, "proxies", "caller-2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type: Dataplane", "mesh: default", "name: caller-2", "outbound:", "kuma.io/service: echo", "kuma.io/service: caller"} {
		if !strings.Contains(string(dp), want) {
			t.Errorf("caller Dataplane lacks %q:\n%s", want, dp)
		}
	}
	ports := map[string]bool{}
	for _, p := range f.List() {
		for _, a := range []string{p.Listen, p.Admin} {
			if ports[a] {
				t.Errorf("address %s used twice", a)
			}
			ports[a] = true
		}
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Callers() {
		for i := range 4 {
			if err := echoThrough(c.Listen, fmt.Sprintf("%s %d\n", c.Name, i)); err != nil {
				t.Errorf("through %s: %v", c.Name, err)
			}
		}
	}
	st, err := f.Status(ctx, "caller-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "default.caller-1" || !st.Connected || st.Replica != "127.0.0.1:1" {
		t.Errorf("status: %+v", st)
	}
	if _, err := f.Status(ctx, "nobody"); err == nil {
		t.Error("status of an unknown proxy: no error")
	}
	if err := f.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	for _, p := range f.List() {
		if f.Running(p.Name) || f.Exit(p.Name) != "exit status 0" {
			t.Errorf("%s after close: running %v, %q", p.Name, f.Running(p.Name), f.Exit(p.Name))
		}
		log, _ := os.ReadFile(filepath.Join(work, "logs", "dp-"+p.Name+".log"))
		if !strings.Contains(string(log), "SIGTERM, draining") {
			t.Errorf("log of %s lacks the drain:\n%s", p.Name, log)
		}
	}
	if err := f.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// TestProxiesNotAvailable: a kuma-dp that exits at once (the placeholder
// release) is reported with the end of its log, not waited for.
func TestProxiesNotAvailable(t *testing.T) {
	bin, work := t.TempDir(), t.TempDir()
	script := "#!/bin/sh\necho 'Error: kuma-dp run is not available in this release yet' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "kuma-dp"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := NewProxies(ProxyOptions{Pairs: 1, BinDir: bin, WorkDir: work, AppPort: 1, XDS: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = f.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "not available") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady: %v", err)
	}
	if err := f.Close(); err == nil || !strings.Contains(err.Error(), "had ended before SIGTERM: exit status 1") {
		t.Errorf("close after the proxies exited by themselves: %v", err)
	}
	if _, err := NewProxies(ProxyOptions{Pairs: 1, BinDir: t.TempDir(), WorkDir: work, XDS: []string{"x"}}); err == nil {
		t.Error("no kuma-dp in bin-dir: no error")
	}
}
