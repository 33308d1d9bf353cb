package backend

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Roles of the proxies of the traffic workload.
const (
	RoleCallee = "callee" // inbound in front of the echo app (service echo)
	RoleCaller = "caller" // outbound to service echo, balanced over every callee
)

// EchoService is the kuma.io/service of the callee proxies.
const EchoService = "echo"

// ProxyOptions configure the kuma-dp proxies of a run.
type ProxyOptions struct {
	// Pairs is how many callee and how many caller proxies to run.
	Pairs int
	// BinDir holds kuma-dp.
	BinDir string
	// WorkDir is the run directory: Dataplane files go to proxies/, state
	// dirs to data/proxies/, logs to logs/dp-NAME.log.
	WorkDir string
	// AppPort is the echo app's port on 127.0.0.1, behind every callee.
	AppPort int
	// XDS lists every replica's xDS address (host:port).
	XDS    []string
	Logger *slog.Logger
}

// Proxy is one kuma-dp process.
type Proxy struct {
	Name   string `json:"name"` // the Dataplane's name (node id default.NAME)
	Role   string `json:"role"`
	Listen string `json:"listen"` // callee: its inbound; caller: its outbound
	Admin  string `json:"admin"`  // admin address (GET /ready, /status)
	// Dataplane is the resource the proxy registers (YAML).
	Dataplane string `json:"-"`
}

// ProxyStatus is kuma-dp's GET /status.
type ProxyStatus struct {
	Node          string          `json:"node"`
	Connected     bool            `json:"connected"`
	Replica       string          `json:"replica"`
	Frozen        bool            `json:"frozen"`
	ConfigVersion json.RawMessage `json:"configVersion,omitempty"`
	LastUpdate    string          `json:"lastUpdate,omitempty"`
	Listeners     []ProxyListener `json:"listeners,omitempty"`
}

// ProxyListener is one listener in kuma-dp's status.
type ProxyListener struct {
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	Active  int64  `json:"active"`
	Total   int64  `json:"total"`
	Failed  int64  `json:"failed"`
}

// Proxies runs the kuma-dp processes of the proxy traffic workload on the
// host (the root network namespace, 127.0.0.1 listeners) whatever the
// backend: callee proxies in front of the echo app and caller proxies with
// an outbound to service echo, each connected to every replica's xDS
// address. The nemeses act on the replicas only, so the data path (client,
// caller, callee, app, all on the host's loopback) is never cut.
type Proxies struct {
	opts    ProxyOptions
	proxies []Proxy
	procs   map[string]*proc
	http    *http.Client

	mu     sync.Mutex
	closed bool
}

// NewProxies picks the ports and writes the Dataplane files. Pairs must
// be at least 1 and BinDir must hold kuma-dp.
func NewProxies(opts ProxyOptions) (*Proxies, error) {
	if opts.Pairs < 1 {
		return nil, fmt.Errorf("proxies: pairs must be at least 1, got %d", opts.Pairs)
	}
	if len(opts.XDS) == 0 {
		return nil, errors.New("proxies: no xDS address")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	bin := filepath.Join(opts.BinDir, "kuma-dp")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("proxies: %w (make build)", err)
	}
	// Callee: inbound, admin. Caller: outbound, inbound, admin.
	ports, err := freePorts(5 * opts.Pairs)
	if err != nil {
		return nil, fmt.Errorf("proxies: %w", err)
	}
	for _, d := range []string{"proxies", "logs", filepath.Join("data", "proxies")} {
		if err := os.MkdirAll(filepath.Join(opts.WorkDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("proxies: %w", err)
		}
	}
	f := &Proxies{opts: opts, procs: map[string]*proc{}, http: &http.Client{Timeout: 2 * time.Second}}
	var cp []string
	for _, x := range opts.XDS {
		cp = append(cp, "grpc://"+x)
	}
	for i := range opts.Pairs {
		p := ports[5*i:]
		callee := Proxy{Name: fmt.Sprintf("echo-%d", i+1), Role: RoleCallee,
			Listen: hostPort("127.0.0.1", p[0]), Admin: hostPort("127.0.0.1", p[1])}
		callee.Dataplane = dataplaneYAML(callee.Name, []inboundSpec{{p[0], opts.AppPort, EchoService}}, 0)
		// The caller's own inbound fronts the echo app too: it is never
		// called, and kuma-dp finds an application behind it.
		caller := Proxy{Name: fmt.Sprintf("caller-%d", i+1), Role: RoleCaller,
			Listen: hostPort("127.0.0.1", p[2]), Admin: hostPort("127.0.0.1", p[4])}
		caller.Dataplane = dataplaneYAML(caller.Name, []inboundSpec{{p[3], opts.AppPort, "caller"}}, p[2])
		f.proxies = append(f.proxies, callee, caller)
	}
	for _, px := range f.proxies {
		file := filepath.Join(opts.WorkDir, "proxies", px.Name+".yaml")
		if err := os.WriteFile(file, []byte(px.Dataplane), 0o644); err != nil {
			return nil, fmt.Errorf("proxies: %w", err)
		}
		state := filepath.Join(opts.WorkDir, "data", "proxies", px.Name)
		_ = os.RemoveAll(state)
		argv := []string{bin, "run",
			"--cp-address", strings.Join(cp, ","),
			"--dataplane-file", file,
			"--state-dir", state,
			"--admin-addr", px.Admin,
			"--log-level", "info",
		}
		f.procs[px.Name] = &proc{name: px.Name, argv: argv, logPath: filepath.Join(opts.WorkDir, "logs", "dp-"+px.Name+".log")}
	}
	return f, nil
}

type inboundSpec struct {
	port, servicePort int
	service           string
}

// dataplaneYAML renders a Dataplane in Kuma's universal format; an
// outbound port of 0 means none.
func dataplaneYAML(name string, inbound []inboundSpec, outboundPort int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n", name)
	for _, in := range inbound {
		fmt.Fprintf(&b, "  - port: %d\n    servicePort: %d\n    tags:\n      kuma.io/service: %s\n", in.port, in.servicePort, in.service)
	}
	if outboundPort != 0 {
		fmt.Fprintf(&b, "  outbound:\n  - port: %d\n    tags:\n      kuma.io/service: %s\n", outboundPort, EchoService)
	}
	return b.String()
}

// List returns every proxy, callees and callers.
func (f *Proxies) List() []Proxy { return append([]Proxy(nil), f.proxies...) }

// Callers returns the caller proxies.
func (f *Proxies) Callers() []Proxy {
	var out []Proxy
	for _, p := range f.proxies {
		if p.Role == RoleCaller {
			out = append(out, p)
		}
	}
	return out
}

// Start starts every kuma-dp: the callees first, so that the callers'
// first configuration already has endpoints.
func (f *Proxies) Start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("proxies: closed")
	}
	for _, role := range []string{RoleCallee, RoleCaller} {
		for _, p := range f.proxies {
			if p.Role != role {
				continue
			}
			if err := f.procs[p.Name].start(); err != nil {
				return fmt.Errorf("proxies: %w", err)
			}
		}
	}
	f.opts.Logger.Info("kuma-dp proxies started", "pairs", f.opts.Pairs, "cp", strings.Join(f.opts.XDS, ","))
	return nil
}

// WaitReady waits until every proxy answers 200 on /ready, failing early
// (with the end of its log) when one exits.
func (f *Proxies) WaitReady(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	pending := f.List()
	for {
		var still []Proxy
		for _, p := range pending {
			if !f.procs[p.Name].running() {
				return fmt.Errorf("kuma-dp %s exited (%s) before it was ready: %s", p.Name, f.procs[p.Name].exit(), tail(f.procs[p.Name].logPath, 5))
			}
			if ok, _ := f.ready(ctx, p); !ok {
				still = append(still, p)
			}
		}
		if pending = still; len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var names []string
			for _, p := range pending {
				_, why := f.ready(context.WithoutCancel(ctx), p)
				names = append(names, p.Name+" ("+why+")")
			}
			return fmt.Errorf("kuma-dp not ready: %s: %w", strings.Join(names, ", "), ctx.Err())
		case <-t.C:
		}
	}
}

func (f *Proxies) ready(ctx context.Context, p Proxy) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Admin+"/ready", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return true, ""
}

// Status asks a proxy for its GET /status.
func (f *Proxies) Status(ctx context.Context, name string) (ProxyStatus, error) {
	var st ProxyStatus
	var admin string
	for _, p := range f.proxies {
		if p.Name == name {
			admin = p.Admin
		}
	}
	if admin == "" {
		return st, fmt.Errorf("no proxy %q", name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status of %s: %s", name, resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("status of %s: %w", name, err)
	}
	return st, nil
}

// Running reports whether a proxy's process is alive.
func (f *Proxies) Running(name string) bool {
	p, ok := f.procs[name]
	return ok && p.running()
}

// Exit says how a proxy's process ended ("" while it runs).
func (f *Proxies) Exit(name string) string {
	if p, ok := f.procs[name]; ok {
		return p.exit()
	}
	return ""
}

// Close stops every proxy with SIGTERM (in parallel; SIGKILL after the
// grace period) and reports those that did not exit with status 0, and
// those that had exited before. Idempotent.
func (f *Proxies) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(f.proxies))
	for i, p := range f.proxies {
		wg.Go(func() {
			pr := f.procs[p.Name]
			if pr.starts() == 0 {
				return
			}
			wasRunning := pr.running()
			if err := pr.stop(stopGrace); err != nil {
				errs[i] = err
				return
			}
			switch exit := pr.exit(); {
			case !wasRunning:
				errs[i] = fmt.Errorf("kuma-dp %s had ended before SIGTERM: %s", p.Name, exit)
			case exit != "exit status 0":
				errs[i] = fmt.Errorf("kuma-dp %s ended on SIGTERM: %s", p.Name, exit)
			}
		})
	}
	wg.Wait()
	f.http.CloseIdleConnections()
	return errors.Join(errs...)
}

// tail returns the last n lines of a file, joined with " | ".
func tail(path string, n int) string {
	fh, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, " | ")
}
