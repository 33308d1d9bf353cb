package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

// The dataplane benchmark: client → caller kuma-dp (outbound) → callee
// kuma-dp (inbound) → app, against client → app, on 127.0.0.1.

var dpThroughputConns = []int{1, 8}

const (
	dpRPSConcurrency = 16
	dpReadyTimeout   = 30 * time.Second
	dpRSSInterval    = 20 * time.Millisecond
	dpStopTimeout    = 5 * time.Second
	dpSettle         = 5 * time.Second // for the proxies to close their connections after the load
	// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
	// 100 on every Linux architecture Go supports.
	clockTicks = 100
)

// Process names, in the order of the report's tables.
const (
	procCaller = "kuma-dp caller"
	procCallee = "kuma-dp callee"
	procApp    = "app (echo/sink)"
	procCP     = "kuma-cp"
	procClient = "kuma-bench (client)"
)

var dpProcs = []string{procCaller, procCallee, procApp, procCP, procClient}

// dpMeasure is one kind of load, run once direct and once proxied.
type dpMeasure struct {
	Key, Title string
}

var dpMeasures = []dpMeasure{
	{"tput-1", "bulk transfer, 1 connection"},
	{"tput-8", "bulk transfer, 8 connections"},
	{"persistent", "64 B round trips, one persistent connection"},
	{"newconn", "64 B request on a new connection, one at a time"},
	{"rps", fmt.Sprintf("64 B request on a new connection, %d concurrent", dpRPSConcurrency)},
}

// dpPhase is one measure over one path.
type dpPhase struct {
	Measure string // dpMeasure.Key
	Path    string // "direct" or "proxied"
	Wall    time.Duration
	CPU     map[string]time.Duration // by process
	Tput    *tputResult
	Lat     *latResult
}

// dpListener is the part of kuma-dp's /status the report uses.
type dpListener struct {
	Name      string `json:"name"`
	Direction string `json:"direction"`
	Active    int64  `json:"active"`
	Total     uint64 `json:"total"`
	Failed    uint64 `json:"failed"`
	BytesIn   uint64 `json:"bytesIn"`
}

// dpResults is everything the section shows.
type dpResults struct {
	Duration   time.Duration
	Setup      time.Duration
	DPVersion  string
	LoadBefore string // /proc/loadavg when the run started
	LoadAfter  string
	Phases     []*dpPhase
	RSSIdle    map[string]int64
	RSSPeak    map[string]int64 // sampled every dpRSSInterval during the load
	RSSAfter   map[string]int64
	HWM        map[string]int64 // VmHWM after the load: the kernel's peak over the process's life
	Listeners  map[string][]dpListener
}

func (r *dpResults) phase(measure, path string) *dpPhase {
	for _, p := range r.Phases {
		if p.Measure == measure && p.Path == path {
			return p
		}
	}
	return nil
}

// dpProcess is a child process of the benchmark with a name for the report.
type dpProcess struct {
	name  string
	proc  *testcluster.Process
	admin string // kuma-dp only
}

func (p *dpProcess) pid() int {
	if p.proc == nil {
		return 0 // the benchmark itself
	}
	return p.proc.PID()
}

func benchDataplane(ctx context.Context, cfg *config) (string, error) {
	m := probeMachine(ctx, cfg)
	at := time.Now()
	res, err := runDataplane(ctx, cfg)
	if err != nil {
		return "", err
	}
	return dataplaneReport(cfg, m, at, res), nil
}

func runDataplane(ctx context.Context, cfg *config) (*dpResults, error) {
	res := &dpResults{Duration: cfg.dpDuration, LoadBefore: loadAverage()}
	setupStart := time.Now()
	dpBin := filepath.Join(cfg.binDir, "kuma-dp")
	if fi, err := os.Stat(dpBin); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("kuma-dp binary %s: missing (make build): %v", dpBin, err)
	}
	res.DPVersion = firstLine(ctx, dpBin, "version")
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for the app process: %w", err)
	}
	dir, cleanup, err := cfg.tempDir("dataplane")
	if err != nil {
		return nil, err
	}
	defer cleanup()

	// One replica: the control plane only hands out the config, it carries
	// no traffic.
	c, err := testcluster.Start(ctx, testcluster.Options{N: 1, BinDir: cfg.binDir, BaseDir: filepath.Join(dir, "cp"),
		Logf: cfg.logf, StopTimeout: dpStopTimeout})
	defer c.Close()
	if err != nil {
		dumpUnlessInterrupted(ctx, c.DumpLogs)
		return nil, fmt.Errorf("start kuma-cp: %w", err)
	}
	if err := waitFormed(ctx, c); err != nil {
		dumpUnlessInterrupted(ctx, c.DumpLogs)
		return nil, fmt.Errorf("kuma-cp ready: %w", err)
	}
	cp := c.Replica(1)

	ports, err := testcluster.FreePorts(7)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	appAddr, calleeIn, callerOut, callerIn, callerApp := addr(0), ports[1], addr(2), ports[3], ports[4]

	app := &dpProcess{name: procApp, proc: &testcluster.Process{Name: "app", Path: exe,
		Args: []string{cmdDPApp, "--addr", appAddr}, LogPath: filepath.Join(dir, "app.log"), StopTimeout: dpStopTimeout}}
	if err := app.proc.Start(); err != nil {
		return nil, err
	}
	defer stopLogged(cfg, app.proc)
	if err := pollUntil(ctx, "the app listens on "+appAddr, dpReadyTimeout, func() error {
		if !app.proc.Running() {
			return fmt.Errorf("app exited: %v: %s", app.proc.ExitErr(), app.proc.LogTail(2000))
		}
		return newConnRequest(ctx, appAddr, 0)
	}); err != nil {
		return nil, err
	}

	startDP := func(name, doc string, adminPort int) (*dpProcess, error) {
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			return nil, err
		}
		admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
		p := &testcluster.Process{Name: name, Path: dpBin, LogPath: filepath.Join(dir, name+".log"), StopTimeout: dpStopTimeout,
			Args: []string{"run", "--cp-address", "grpc://" + cp.XDSAddr, "--dataplane-file", file,
				"--state-dir", filepath.Join(dir, name+"-state"), "--admin-addr", admin,
				"--proxy", "builtin", "--drain-time", "1s", "--log-level", "info"}}
		if err := p.Start(); err != nil {
			return nil, err
		}
		return &dpProcess{name: "kuma-dp " + name, proc: p, admin: admin}, nil
	}
	callee, err := startDP("callee", testcluster.InboundDataplane("callee", "echo", calleeIn, ports[0]), ports[5])
	if err != nil {
		return nil, err
	}
	defer stopLogged(cfg, callee.proc)
	caller, err := startDP("caller", testcluster.CallerDataplane("caller", "caller", callerIn, callerApp, "echo", ports[2]), ports[6])
	if err != nil {
		return nil, err
	}
	defer stopLogged(cfg, caller.proc)
	dumpDPs := func() {
		if ctx.Err() == nil {
			for _, p := range []*dpProcess{caller, callee} {
				fmt.Fprintf(cfg.stderr, "--- %s log ---\n%s\n", p.name, p.proc.LogTail(16<<10))
			}
		}
	}
	for _, p := range []*dpProcess{callee, caller} {
		if err := pollUntil(ctx, p.name+" ready", dpReadyTimeout, func() error {
			if !p.proc.Running() {
				return fmt.Errorf("exited: %v", p.proc.ExitErr())
			}
			code, _, body, err := testcluster.Get(ctx, "http://"+p.admin+"/ready")
			if err != nil {
				return err
			}
			if code != 200 {
				return fmt.Errorf("GET /ready: %d %s", code, strings.TrimSpace(string(body)))
			}
			return nil
		}); err != nil {
			dumpDPs()
			return nil, err
		}
	}
	if err := pollUntil(ctx, "a request through the caller", dpReadyTimeout, func() error {
		return newConnRequest(ctx, callerOut, 0)
	}); err != nil {
		dumpDPs()
		return nil, err
	}
	res.Setup = time.Since(setupStart)
	cfg.log.Info("dataplane ready", "setup", res.Setup.Round(time.Millisecond), "caller", callerOut, "app", appAddr)

	procs := []*dpProcess{caller, callee, app, {name: procCP, proc: cp.Process}, {name: procClient}}
	res.RSSIdle = readAll(procs, "VmRSS")
	sampler := startRSSSampler(procs)
	res.Phases, err = runDPPhases(ctx, cfg, procs, appAddr, callerOut)
	res.RSSPeak = sampler.stop()
	if err != nil {
		dumpDPs()
		return nil, err
	}
	res.RSSAfter = readAll(procs, "VmRSS")
	res.HWM = readAll(procs, "VmHWM")
	for k, v := range res.RSSAfter { // the sampler may have missed the last moment
		res.RSSPeak[k] = max(res.RSSPeak[k], v)
	}
	// Every connection the load opened is closed by now: the proxies must
	// let go of theirs within a moment, or they leak.
	res.Listeners = map[string][]dpListener{}
	for _, p := range []*dpProcess{caller, callee} {
		var ls []dpListener
		err := pollUntil(ctx, p.name+" without open connections", dpSettle, func() error {
			var err error
			if ls, err = dpListeners(ctx, p.admin); err != nil {
				return err
			}
			for _, l := range ls {
				if l.Active != 0 {
					return fmt.Errorf("listener %s: %d connections open", l.Name, l.Active)
				}
			}
			return nil
		})
		if err != nil {
			cfg.log.Warn("kuma-dp status after the load", "process", p.name, "err", err)
		}
		res.Listeners[p.name] = ls
	}
	for _, p := range []*dpProcess{caller, callee, app} {
		if !p.proc.Running() {
			return nil, fmt.Errorf("%s exited during the benchmark: %v", p.name, p.proc.ExitErr())
		}
	}
	res.LoadAfter = loadAverage()
	return res, nil
}

// runDPPhases runs every measure direct then proxied, back to back, so that
// both see the same background load.
func runDPPhases(ctx context.Context, cfg *config, procs []*dpProcess, direct, proxied string) ([]*dpPhase, error) {
	d := cfg.dpDuration
	var phases []*dpPhase
	for _, m := range dpMeasures {
		for _, path := range []string{"direct", "proxied"} {
			addr := direct
			if path == "proxied" {
				addr = proxied
			}
			ph := &dpPhase{Measure: m.Key, Path: path}
			// CPU and wall time count from the end of the warm-up.
			var (
				before map[string]time.Duration
				start  time.Time
			)
			mark := func() { before, start = readCPU(procs), time.Now() }
			var err error
			switch m.Key {
			case "tput-1", "tput-8":
				conns := dpThroughputConns[0]
				if m.Key == "tput-8" {
					conns = dpThroughputConns[1]
				}
				mark()
				ph.Tput, err = measureThroughput(ctx, addr, conns, d)
			case "persistent":
				ph.Lat, err = measurePersistent(ctx, addr, d, mark)
			case "newconn":
				ph.Lat, err = measureNewConns(ctx, addr, 1, d, dpMaxNewConns, mark)
			case "rps":
				ph.Lat, err = measureNewConns(ctx, addr, dpRPSConcurrency, d, dpMaxNewConns, mark)
			}
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", m.Title, path, err)
			}
			ph.Wall = time.Since(start)
			after := readCPU(procs)
			ph.CPU = map[string]time.Duration{}
			for k, v := range after {
				ph.CPU[k] = v - before[k]
			}
			logPhase(cfg, m, ph)
			phases = append(phases, ph)
		}
	}
	return phases, nil
}

func logPhase(cfg *config, m dpMeasure, ph *dpPhase) {
	args := []any{"measure", m.Key, "path", ph.Path, "wall", ph.Wall.Round(time.Millisecond),
		"cpu_caller", ph.CPU[procCaller], "cpu_callee", ph.CPU[procCallee]}
	if ph.Tput != nil {
		args = append(args, "MBps", fmt.Sprintf("%.0f", ph.Tput.MBps()), "errors", countErrors(ph.Tput.Errors))
	}
	if ph.Lat != nil {
		args = append(args, "requests", len(ph.Lat.Latencies), "per_s", fmt.Sprintf("%.0f", ph.Lat.rate()),
			"p50", percentile(ph.Lat.Latencies, 50), "p99", percentile(ph.Lat.Latencies, 99), "errors", ph.Lat.errorCount())
	}
	cfg.log.Info("dataplane phase done", args...)
}

// stopLogged stops a child process (SIGTERM, then SIGKILL) and logs a failure.
func stopLogged(cfg *config, p *testcluster.Process) {
	if err := p.Stop(); err != nil {
		cfg.log.Warn("stop process", "process", p.Name, "err", err)
	}
}

// pollUntil calls check until it succeeds, ctx ends or within has passed.
func pollUntil(ctx context.Context, what string, within time.Duration, check func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(testcluster.PollInterval):
		}
	}
}

func dpListeners(ctx context.Context, admin string) ([]dpListener, error) {
	code, _, body, err := testcluster.Get(ctx, "http://"+admin+"/status")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET /status: %d", code)
	}
	var st struct {
		Listeners []dpListener `json:"listeners"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decode /status: %w", err)
	}
	return st.Listeners, nil
}

// readAll reads one /proc/PID/status field of every process; a process that
// cannot be read is left out.
func readAll(procs []*dpProcess, field string) map[string]int64 {
	out := map[string]int64{}
	for _, p := range procs {
		if v, err := testcluster.ProcStatusBytes(p.pid(), field); err == nil {
			out[p.name] = v
		}
	}
	return out
}

// readCPU returns the CPU time (user + system) each process used so far.
func readCPU(procs []*dpProcess) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, p := range procs {
		if v, err := cpuTime(p.pid()); err == nil {
			out[p.name] = v
		}
	}
	return out
}

// cpuTime is utime + stime of /proc/PID/stat (pid 0: this process).
func cpuTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return parseStatCPU(string(data))
}

// parseStatCPU reads fields 14 and 15 (utime, stime) of a /proc/PID/stat
// line. The command name (field 2) may hold spaces and parentheses, so the
// fields are counted from its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: utime/stime %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// rssSampler records the highest VmRSS of each process until stopped.
type rssSampler struct {
	procs  []*dpProcess
	stopCh chan struct{}
	doneCh chan struct{}
	peak   map[string]int64 // owned by runSample until doneCh is closed
}

func startRSSSampler(procs []*dpProcess) *rssSampler {
	s := &rssSampler{procs: procs, stopCh: make(chan struct{}), doneCh: make(chan struct{}), peak: map[string]int64{}}
	go s.runSample()
	return s
}

func (s *rssSampler) runSample() {
	defer close(s.doneCh)
	t := time.NewTicker(dpRSSInterval)
	defer t.Stop()
	for {
		for k, v := range readAll(s.procs, "VmRSS") {
			s.peak[k] = max(s.peak[k], v)
		}
		select {
		case <-s.stopCh:
			return
		case <-t.C:
		}
	}
}

// stop ends the sampling and returns the peaks.
func (s *rssSampler) stop() map[string]int64 {
	close(s.stopCh)
	<-s.doneCh
	return s.peak
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
