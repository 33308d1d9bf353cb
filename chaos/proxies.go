package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/backend"
	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/report"
	"github.com/kuma-ha/kuma-ha/chaos/workload"
)

// Files of the proxy traffic workload in the run directory.
const (
	proxyRequestsFile = "proxy-traffic.jsonl"
	proxiesFile       = "proxies.json"
)

// proxyPollEvery is how often each proxy's /status is polled during the run.
const proxyPollEvery = 500 * time.Millisecond

// proxyRun is the proxy traffic workload of a run: the echo app (in this
// process), the kuma-dp processes in front of it and behind the clients,
// the traffic, and what the proxies reported on /status.
type proxyRun struct {
	echo    *workload.EchoServer
	fleet   *backend.Proxies
	traffic *workload.ProxyTraffic
	timeout time.Duration
	log     *slog.Logger
	// replicaOf maps an xDS address to its replica's name.
	replicaOf map[string]string

	mu struct {
		sync.Mutex
		events     []check.ProxyEvent
		last       map[string]check.ProxyEvent
		monitorEnd int64
		final      map[string]backend.ProxyStatus
		notes      []string // for the report: proxies that exited early
	}
}

// startProxies starts the echo app and the kuma-dp processes, and returns
// once every proxy is ready and every caller passed traffic (bounded by
// ctx). On error what was started is stopped again.
func startProxies(ctx context.Context, cfg Config, dir, binDir string, nodes []backend.Node, log *slog.Logger) (_ *proxyRun, err error) {
	log = log.With("component", "proxies")
	echo, err := workload.StartEchoServer("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	pr := &proxyRun{echo: echo, log: log, replicaOf: map[string]string{}, timeout: cfg.ProxyTraffic.Timeout}
	if pr.timeout <= 0 {
		pr.timeout = 2 * time.Second
	}
	pr.mu.last = map[string]check.ProxyEvent{}
	defer func() {
		if err != nil {
			_ = pr.close()
		}
	}()
	var xds []string
	for _, n := range nodes {
		xds = append(xds, n.XDS)
		pr.replicaOf[n.XDS] = n.Name
	}
	pr.fleet, err = backend.NewProxies(backend.ProxyOptions{
		Pairs: cfg.Proxies, BinDir: binDir, WorkDir: dir, AppPort: echo.Port(), XDS: xds, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if err := pr.fleet.Start(); err != nil {
		return nil, err
	}
	if err := pr.fleet.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("proxies: %w (logs in %s/logs/dp-*.log)", err, dir)
	}
	var callers []workload.Caller
	for _, c := range pr.fleet.Callers() {
		callers = append(callers, workload.Caller{Name: c.Name, Addr: c.Listen})
		if err := waitTraffic(ctx, c); err != nil {
			return nil, fmt.Errorf("proxies: %w (logs in %s/logs/dp-*.log)", err, dir)
		}
	}
	pr.traffic = workload.NewProxyTraffic(callers, cfg.ProxyTraffic)
	log.Info("proxies ready", "callers", len(callers), "echo", echo.Addr())
	return pr, nil
}

// waitTraffic waits until three requests in a row through caller c
// succeed: it has a configuration with endpoints of service echo.
func waitTraffic(ctx context.Context, c backend.Proxy) error {
	streak := 0
	var last error
	for streak < 3 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = workload.Echo(rctx, c.Listen, []byte("kuma-chaos probe "+c.Name+"\n"))
		cancel()
		if last == nil {
			streak++
			continue
		}
		streak = 0
		select {
		case <-ctx.Done():
			return fmt.Errorf("no traffic through %s (%s): %w (last: %v)", c.Name, c.Listen, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// runMonitor polls every proxy's /status until done closes and records
// each change.
func (pr *proxyRun) runMonitor(done <-chan struct{}, now func() int64) {
	t := time.NewTicker(proxyPollEvery)
	defer t.Stop()
	for {
		for _, p := range pr.fleet.List() {
			if !pr.fleet.Running(p.Name) {
				pr.exited(now(), p.Name)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := pr.fleet.Status(ctx, p.Name)
			cancel()
			pr.observe(now(), p.Name, st, err)
		}
		pr.mu.Lock()
		pr.mu.monitorEnd = now()
		pr.mu.Unlock()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// exited records a proxy whose process ended while the workload runs:
// nothing in the harness stops a proxy before the end, so either kuma-dp
// quit by itself or something outside the harness signalled it. Either
// way its traffic fails and the checker says so; the note says why.
func (pr *proxyRun) exited(at int64, name string) {
	exit := pr.fleet.Exit(name)
	pr.mu.Lock()
	prev := pr.mu.last[name]
	pr.mu.Unlock()
	if strings.HasPrefix(prev.Err, "kuma-dp exited") {
		return
	}
	msg := fmt.Sprintf("kuma-dp exited during the run (%s)", exit)
	pr.observe(at, name, backend.ProxyStatus{}, errors.New(msg))
	note := fmt.Sprintf("proxy %s: %s at %s; the harness stops proxies only at the end, so it quit by itself or was signalled from outside (see logs/dp-%s.log)", name, msg, secs(at), name)
	pr.log.Warn("proxy exited during the run", "proxy", name, "at", time.Duration(at), "exit", exit)
	pr.mu.Lock()
	pr.mu.notes = append(pr.mu.notes, note)
	pr.mu.Unlock()
}

func (pr *proxyRun) observe(at int64, name string, st backend.ProxyStatus, err error) {
	e := check.ProxyEvent{Proxy: name}
	if err != nil {
		e.Err = err.Error()
	} else {
		e.Connected, e.Frozen = st.Connected, st.Frozen
		if e.Connected {
			e.Replica = st.Replica
			if n, ok := pr.replicaOf[st.Replica]; ok {
				e.Replica = n
			}
		}
		var buf bytes.Buffer
		if json.Compact(&buf, st.ConfigVersion) == nil {
			e.Version = buf.String()
		}
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	prev, seen := pr.mu.last[name]
	if seen && prev.Connected == e.Connected && prev.Replica == e.Replica && prev.Frozen == e.Frozen &&
		prev.Version == e.Version && (prev.Err == "") == (e.Err == "") {
		return
	}
	pr.mu.last[name] = e
	e.At = at
	pr.mu.events = append(pr.mu.events, e)
	if seen {
		pr.log.Info("proxy status changed", "proxy", name, "at", time.Duration(at), "connected", e.Connected,
			"replica", e.Replica, "frozen", e.Frozen, "version", e.Version, "err", e.Err)
	}
}

// stop records every proxy's final status, stops the proxies (SIGTERM) and
// the echo app. Problems are returned as notes for the report.
func (pr *proxyRun) stop(ctx context.Context) []string {
	final := map[string]backend.ProxyStatus{}
	pr.mu.Lock()
	notes := append([]string(nil), pr.mu.notes...)
	pr.mu.Unlock()
	for _, p := range pr.fleet.List() {
		if !pr.fleet.Running(p.Name) {
			continue // said already, or by close
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := pr.fleet.Status(sctx, p.Name)
		cancel()
		if err != nil {
			notes = append(notes, "final status of proxy "+p.Name+": "+err.Error())
			continue
		}
		final[p.Name] = st
	}
	pr.mu.Lock()
	pr.mu.final = final
	pr.mu.Unlock()
	if err := pr.close(); err != nil {
		notes = append(notes, "stopping the proxies: "+err.Error())
	}
	return notes
}

// close stops the proxies and the echo app; idempotent.
func (pr *proxyRun) close() error {
	var errs []error
	if pr.fleet != nil {
		errs = append(errs, pr.fleet.Close())
	}
	if pr.echo != nil {
		errs = append(errs, pr.echo.Close())
	}
	return errors.Join(errs...)
}

// infos describes the proxies for run.json.
func (pr *proxyRun) infos() []report.ProxyInfo {
	var out []report.ProxyInfo
	for _, p := range pr.fleet.List() {
		out = append(out, report.ProxyInfo{Name: p.Name, Role: p.Role, Listen: p.Listen, Exit: pr.fleet.Exit(p.Name)})
	}
	return out
}

// proxiesDoc is proxies.json.
type proxiesDoc struct {
	PollEvery  string                         `json:"pollEvery"`
	Timeout    string                         `json:"requestTimeout"`
	MonitorEnd int64                          `json:"monitorEnd"`
	Events     []check.ProxyEvent             `json:"events"`
	Final      map[string]backend.ProxyStatus `json:"final,omitempty"`
}

// data is the record for the report.
func (pr *proxyRun) data(infos []report.ProxyInfo) *report.ProxyData {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return &report.ProxyData{
		Proxies: infos, Requests: pr.traffic.Requests(), Events: append([]check.ProxyEvent(nil), pr.mu.events...),
		MonitorEnd: pr.mu.monitorEnd, PollEvery: proxyPollEvery, Timeout: pr.timeout,
	}
}

// save writes proxy-traffic.jsonl and proxies.json.
func (pr *proxyRun) save(dir string, d *report.ProxyData) error {
	pr.mu.Lock()
	doc := proxiesDoc{PollEvery: d.PollEvery.String(), Timeout: d.Timeout.String(), MonitorEnd: d.MonitorEnd, Events: d.Events, Final: pr.mu.final}
	pr.mu.Unlock()
	if err := saveProxyRequests(filepath.Join(dir, proxyRequestsFile), d.Requests); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, proxiesFile), doc)
}

// loadProxyData reads what save wrote; nil (and no error) when the run had
// no proxy traffic.
func loadProxyData(dir string, infos []report.ProxyInfo) (*report.ProxyData, error) {
	reqs, err := loadProxyRequests(filepath.Join(dir, proxyRequestsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc proxiesDoc
	if err := readJSON(filepath.Join(dir, proxiesFile), &doc); err != nil {
		return nil, err
	}
	d := &report.ProxyData{Proxies: infos, Requests: reqs, Events: doc.Events, MonitorEnd: doc.MonitorEnd}
	d.PollEvery, _ = time.ParseDuration(doc.PollEvery)
	d.Timeout, _ = time.ParseDuration(doc.Timeout)
	return d, nil
}

func saveProxyRequests(path string, reqs []check.ProxyRequest) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write proxy requests: %w", err)
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for i := range reqs {
		if err := enc.Encode(&reqs[i]); err != nil {
			f.Close()
			return fmt.Errorf("write proxy requests: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write proxy requests: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write proxy requests: %w", err)
	}
	return nil
}

func loadProxyRequests(path string) ([]check.ProxyRequest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read proxy requests: %w", err)
	}
	defer f.Close()
	var out []check.ProxyRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r check.ProxyRequest
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("read proxy requests: %s line %d: %w", path, n, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read proxy requests: %w", err)
	}
	return out, nil
}
