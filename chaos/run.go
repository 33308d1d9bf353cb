package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/backend"
	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
	"github.com/kuma-ha/kuma-ha/chaos/nemesis"
	"github.com/kuma-ha/kuma-ha/chaos/report"
	"github.com/kuma-ha/kuma-ha/chaos/workload"
)

// Backends.
const (
	BackendProcess = "process"
	BackendDocker  = "docker"
)

// Config is one chaos run.
type Config struct {
	Backend  string // process or docker
	Network  string // process backend: auto, loopback or netns
	Replicas int    // 3 or 5
	Duration time.Duration
	Seed     uint64
	Nemeses  []nemesis.Kind
	Timing   nemesis.Timing
	OutDir   string // the run directory
	BinDir   string // holds kuma-cp
	// ExtraArgs are appended to every `kuma-cp run`.
	ExtraArgs []string
	Workload  workload.RESTOptions
	// Proxies is how many pairs of kuma-dp proxies (a callee in front of
	// the echo app, a caller with an outbound to it) carry TCP traffic
	// during the run; 0 for none.
	Proxies      int
	ProxyTraffic workload.ProxyOptions
	// RecoveryBound is how long the cluster may take after healing to have
	// one leader and every replica healthy.
	RecoveryBound time.Duration
	// Warmup is fault-free load before the first fault.
	Warmup time.Duration
	// CheckTimeout bounds the linearizability search per key.
	CheckTimeout time.Duration
	// MinFaults, if positive, fails the run (the nemesis checker) unless
	// at least this many faults were carried out, none with an error.
	MinFaults int
	KeepData  bool
	Progress  io.Writer // progress lines; nil for none
	Logger    *slog.Logger
}

// Validate names the first bad field as its flag.
func (c *Config) Validate() error {
	switch c.Backend {
	case BackendProcess, BackendDocker:
	default:
		return fmt.Errorf("--backend: want process or docker, got %q", c.Backend)
	}
	if c.Replicas != 3 && c.Replicas != 5 {
		return fmt.Errorf("--replicas: want 3 or 5, got %d", c.Replicas)
	}
	if c.Duration < 10*time.Second {
		return fmt.Errorf("--duration: at least 10s, got %s", c.Duration)
	}
	if len(c.Nemeses) == 0 {
		return errors.New("--nemesis: empty")
	}
	if c.OutDir == "" {
		return errors.New("--out: empty")
	}
	if c.BinDir == "" {
		return errors.New("--bin-dir: empty")
	}
	if c.Proxies < 0 || c.Proxies > 16 {
		return fmt.Errorf("--proxies: want 0-16 pairs, got %d", c.Proxies)
	}
	if c.MinFaults < 0 {
		return fmt.Errorf("--min-faults: must not be negative, got %d", c.MinFaults)
	}
	if c.RecoveryBound <= 0 {
		return fmt.Errorf("--recovery-bound: must be positive, got %s", c.RecoveryBound)
	}
	return nil
}

// Result is the outcome of a run.
type Result struct {
	Dir      string
	Summary  string
	Verdicts []check.Verdict
	Passed   bool
}

// Run performs a chaos run and writes its directory. The error is set when
// the run could not be carried out (the cluster did not form, interrupted);
// a failed checker is a Result with Passed false.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timing == (nemesis.Timing{}) {
		cfg.Timing = nemesis.DefaultTiming
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 3 * time.Second
	}
	dir, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	for _, sub := range []string{"", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
	}
	_ = os.RemoveAll(filepath.Join(dir, "data"))
	binDir, err := filepath.Abs(cfg.BinDir)
	if err != nil {
		return nil, fmt.Errorf("--bin-dir: %w", err)
	}
	log := cfg.Logger.With("component", "chaos")
	bopts := backend.Options{Replicas: cfg.Replicas, BinDir: binDir, WorkDir: dir, ExtraArgs: cfg.ExtraArgs, Logger: log}
	var b backend.Backend
	switch cfg.Backend {
	case BackendProcess:
		b, err = backend.NewProcess(bopts, cfg.Network)
	default:
		b, err = backend.NewDocker(bopts)
	}
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, dir: dir, binDir: binDir, b: b, log: log}
	defer func() {
		if cerr := b.Close(); cerr != nil {
			log.Warn("cleanup", "err", cerr)
		}
		if !cfg.KeepData {
			_ = os.RemoveAll(filepath.Join(dir, "data"))
		}
	}()
	return r.run(ctx)
}

type runner struct {
	cfg    Config
	dir    string
	binDir string
	b      backend.Backend
	log    *slog.Logger
	rec    *history.Recorder
	view   *clusterView
	// proxies is the proxy traffic workload; nil without one.
	proxies *proxyRun

	kinds       []nemesis.Kind
	unavailable [][2]string
	plan        []nemesis.Step
	healedAt    int64
	notes       []string
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	r.progressf("starting %d replicas (%s backend)", r.cfg.Replicas, r.cfg.Backend)
	if err := r.b.Start(ctx); err != nil {
		r.collectLogs()
		return nil, fmt.Errorf("start cluster: %w (logs in %s/logs)", err, r.dir)
	}
	r.view = newClusterView(r.b)
	formCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err := r.view.WaitHealthy(formCtx)
	cancel()
	if err != nil {
		r.collectLogs()
		return nil, fmt.Errorf("cluster did not form: %w (logs in %s/logs)", err, r.dir)
	}
	r.chooseNemeses()
	if n, ok := r.b.(backend.Noter); ok {
		r.notes = append(r.notes, n.Notes()...)
	}
	r.plan = nemesis.Plan(r.cfg.Seed, r.kinds, r.cfg.Duration-r.cfg.Warmup, r.cfg.Timing)
	r.progressf("cluster of %s formed; backend %s; nemeses %s; seed %d", strings.Join(r.view.names(), ","), r.b.Name(), joinKinds(r.kinds), r.cfg.Seed)
	for _, u := range r.unavailable {
		r.progressf("not injected: %s: %s", u[0], u[1])
	}
	for _, n := range r.notes {
		r.progressf("note: %s", n)
	}

	if r.cfg.Proxies > 0 {
		r.progressf("starting %d pairs of kuma-dp proxies and the echo app", r.cfg.Proxies)
		pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		r.proxies, err = startProxies(pctx, r.cfg, r.dir, r.binDir, r.b.Nodes(), r.log)
		cancel()
		if err != nil {
			r.collectLogs()
			return nil, fmt.Errorf("%w; --proxies 0 runs without them", err)
		}
		defer r.proxies.close()
		r.progressf("proxies ready: traffic passes through %d callers", r.cfg.Proxies)
	}

	// Time 0 of the history: the cluster has formed, the load starts.
	r.rec = history.NewRecorder()
	rest := workload.NewREST(r.cfg.Workload)
	env := workload.Env{Targets: r.targets, Recorder: r.rec, Seed: r.cfg.Seed, Logger: r.log}

	// The workload runs for the duration, and longer if the last fault
	// (a rolling restart takes what it takes) ends later.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := rest.Run(loadCtx, env); err != nil {
			r.log.Warn("workload", "err", err)
		}
	})
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Go(func() { r.runProgress(progressDone) })
	if r.proxies != nil {
		wg.Go(func() {
			if err := r.proxies.traffic.Run(loadCtx, env); err != nil {
				r.log.Warn("proxy traffic", "err", err)
			}
		})
		progressWG.Go(func() { r.proxies.runMonitor(progressDone, r.rec.Now) })
	}

	exec := &nemesis.Executor{Backend: r.b, Cluster: r.view, Recorder: r.rec, Logger: r.log}
	nemesisErr := func() error {
		if err := sleepCtx(ctx, r.cfg.Warmup); err != nil {
			return err
		}
		return exec.Run(ctx, r.plan, r.cfg.Duration-time.Since(r.rec.Start()))
	}()
	// The nemesis starts no fault that could not end in time; the workload
	// runs until the duration ends.
	_ = sleepCtx(ctx, r.cfg.Duration-time.Since(r.rec.Start()))
	stopLoad()
	wg.Wait()
	close(progressDone)
	progressWG.Wait()
	if nemesisErr != nil && ctx.Err() == nil {
		r.log.Warn("nemesis", "err", nemesisErr)
	}

	// Heal everything, whatever happened (also on ^C).
	healCtx, cancelHeal := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	healErr := nemesis.HealAll(healCtx, r.b)
	cancelHeal()
	r.healedAt = r.rec.Now()
	if healErr != nil {
		r.notes = append(r.notes, "heal: "+healErr.Error())
		r.log.Warn("heal", "err", healErr)
	}
	if ctx.Err() != nil {
		r.collectLogs()
		h := r.rec.Snapshot()
		_ = h.Save(filepath.Join(r.dir, "history.jsonl"))
		if r.proxies != nil {
			r.proxies.stop(context.WithoutCancel(ctx))
			_ = r.proxies.save(r.dir, r.proxies.data(r.proxies.infos()))
		}
		return nil, fmt.Errorf("%w: partial history in %s", errInterrupted, r.dir)
	}
	r.progressf("healed at %s; waiting for recovery (bound %s)", secs(r.healedAt), r.cfg.RecoveryBound)

	recovery := check.Recovery{HealedAt: r.healedAt, Bound: r.cfg.RecoveryBound, Replicas: r.view.names()}
	r.view.observeRecovery(ctx, &recovery, r.rec.Now, 3*time.Second)

	r.progressf("final reads of %d keys on every replica", len(rest.Keys()))
	finalCtx, cancelFinal := context.WithTimeout(ctx, 3*time.Minute)
	if err := rest.Final(finalCtx, env); err != nil {
		r.notes = append(r.notes, "final reads: "+err.Error())
	}
	cancelFinal()
	statesCtx, cancelStates := context.WithTimeout(ctx, 2*time.Minute)
	states := r.view.collectStates(statesCtx)
	cancelStates()
	// The proxies stop after the states are read, so that their
	// disconnection changes no state being compared; the replicas still
	// run and see them go.
	var proxy *report.ProxyData
	if r.proxies != nil {
		r.notes = append(r.notes, r.proxies.stop(ctx)...)
		proxy = r.proxies.data(r.proxies.infos())
		if err := r.proxies.save(r.dir, proxy); err != nil {
			return nil, err
		}
	}
	r.collectLogs()
	if err := r.b.Close(); err != nil {
		r.notes = append(r.notes, "cleanup: "+err.Error())
	}
	if ctx.Err() != nil {
		return nil, errInterrupted
	}

	h := r.rec.Snapshot()
	if err := h.Save(filepath.Join(r.dir, "history.jsonl")); err != nil {
		return nil, err
	}
	_ = writeJSON(filepath.Join(r.dir, "recovery.json"), recovery)
	_ = writeJSON(filepath.Join(r.dir, "states.json"), states)
	_ = writeJSON(filepath.Join(r.dir, "plan.json"), r.plan)

	info := r.info()
	if proxy != nil {
		info.Proxies = proxy.Proxies
	}
	if err := writeJSON(filepath.Join(r.dir, "run.json"), info); err != nil {
		return nil, err
	}
	r.progressf("checking %d operations", len(h.Ops))
	var reqs []check.ProxyRequest
	if proxy != nil {
		reqs = proxy.Requests
	}
	verdicts := Check(h, states, recovery, reqs, info.MinFaults, r.dir, r.cfg.CheckTimeout)
	return finish(r.dir, info, h, proxy, verdicts)
}

// RunInfo describes a run for its report; saved as run.json.
type RunInfo struct {
	Backend     string      `json:"backend"` // as the backend names itself (process/netns, docker)
	Replicas    []string    `json:"replicas"`
	Duration    string      `json:"duration"`
	Seed        uint64      `json:"seed"`
	Nemeses     string      `json:"nemeses"`
	Clients     int         `json:"clients"`
	ExtraArgs   string      `json:"kumaCpArgs"`
	Recovery    string      `json:"recoveryBound"`
	HealedAt    int64       `json:"healedAt"`
	Unavailable [][2]string `json:"unavailable,omitempty"`
	Notes       []string    `json:"notes,omitempty"`
	// Proxies are the kuma-dp processes of the proxy traffic workload.
	Proxies []report.ProxyInfo `json:"proxies,omitempty"`
	// ProxyRequests and ProxyFailed count the requests through them.
	ProxyRequests int `json:"proxyRequests,omitempty"`
	ProxyFailed   int `json:"proxyFailed,omitempty"`
	// MinFaults is the nemesis checker's minimum (0: not checked).
	MinFaults int `json:"minFaults,omitempty"`
}

func (r *runner) info() RunInfo {
	clients := r.cfg.Workload.Clients
	if clients == 0 {
		clients = 8
	}
	return RunInfo{
		Backend: r.b.Name(), Replicas: r.view.names(), Duration: r.cfg.Duration.String(), Seed: r.cfg.Seed,
		Nemeses: joinKinds(r.kinds), Clients: clients, ExtraArgs: strings.Join(r.cfg.ExtraArgs, " "),
		Recovery: r.cfg.RecoveryBound.String(), HealedAt: r.healedAt, Unavailable: r.unavailable, Notes: r.notes,
		MinFaults: r.cfg.MinFaults,
	}
}

// finish writes verdicts.json, summary.md and report.html (and run.json
// again, with the proxy request counts) and returns the result. proxy is
// nil for a run without proxy traffic.
func finish(dir string, info RunInfo, h *history.History, proxy *report.ProxyData, verdicts []check.Verdict) (*Result, error) {
	if err := writeJSON(filepath.Join(dir, "verdicts.json"), verdicts); err != nil {
		return nil, err
	}
	if proxy != nil {
		ps := report.SummarizeProxy(proxy)
		info.ProxyRequests, info.ProxyFailed = ps.Requests, ps.Failed
		if err := writeJSON(filepath.Join(dir, "run.json"), info); err != nil {
			return nil, err
		}
	}
	passed := check.AllOK(verdicts)
	summary := summaryLine(info, h, verdicts, passed)
	d := reportData(info, h, proxy, verdicts, passed, summary)
	f, err := os.Create(filepath.Join(dir, "summary.md"))
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	_ = report.Markdown(f, d)
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	if err := writeReport(dir, d); err != nil {
		return nil, err
	}
	return &Result{Dir: dir, Summary: summary, Verdicts: verdicts, Passed: passed}, nil
}

// Check runs every checker on a recorded run; minFaults is the nemesis
// checker's minimum (0: skipped).
func Check(h *history.History, states []check.ReplicaState, recovery check.Recovery, proxy []check.ProxyRequest, minFaults int, dir string, timeout time.Duration) []check.Verdict {
	return []check.Verdict{
		check.Linearizable(h.Ops, check.LinearizableOptions{Timeout: timeout, VisualizeDir: dir}),
		check.LostWrites(h.Ops),
		check.StaleReads(h.Ops),
		check.Converged(states),
		check.Recovered(recovery),
		check.ProxyTraffic(proxy, h.Faults),
		check.Nemesis(h.Faults, minFaults),
	}
}

// Recheck runs the checkers again on a run directory written by Run and
// rewrites its verdicts, summary and report. Without states.json or
// recovery.json those checkers answer Unknown.
func Recheck(dir string, timeout time.Duration) (*Result, error) {
	h, err := history.Load(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	var states []check.ReplicaState
	var recovery check.Recovery
	var info RunInfo
	for name, v := range map[string]any{"states.json": &states, "recovery.json": &recovery, "run.json": &info} {
		if err := readJSON(filepath.Join(dir, name), v); err != nil {
			return nil, err
		}
	}
	if len(info.Replicas) == 0 {
		info.Replicas = recovery.Replicas
	}
	proxy, err := loadProxyData(dir, info.Proxies)
	if err != nil {
		return nil, err
	}
	var reqs []check.ProxyRequest
	if proxy != nil {
		reqs = proxy.Requests
	}
	return finish(dir, info, h, proxy, Check(h, states, recovery, reqs, info.MinFaults, dir, timeout))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// chooseNemeses drops the kinds the backend cannot inject, and says why.
func (r *runner) chooseNemeses() {
	unavailable := r.b.Unavailable()
	for _, k := range r.cfg.Nemeses {
		if reason, ok := unavailable[k.Fault()]; ok {
			r.unavailable = append(r.unavailable, [2]string{string(k), reason})
			continue
		}
		if k == nemesis.PartitionBridge && r.cfg.Replicas < 3 {
			r.unavailable = append(r.unavailable, [2]string{string(k), "needs three replicas"})
			continue
		}
		r.kinds = append(r.kinds, k)
	}
	// Faults nobody asked for that the backend cannot do are still worth saying.
	for _, k := range nemesis.All {
		if slices.Contains(r.cfg.Nemeses, k) {
			continue
		}
		if reason, ok := unavailable[k.Fault()]; ok && !slices.ContainsFunc(r.unavailable, func(u [2]string) bool { return u[0] == string(k) }) {
			r.unavailable = append(r.unavailable, [2]string{string(k), "(not requested) " + reason})
		}
	}
}

func (r *runner) targets() []workload.Target {
	nodes := r.b.Nodes()
	out := make([]workload.Target, len(nodes))
	for i, n := range nodes {
		out[i] = workload.Target{Name: n.Name, API: n.API, XDS: n.XDS, Incarnation: r.b.Incarnation(n.Name)}
	}
	return out
}

func (r *runner) collectLogs() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.b.CollectLogs(ctx, filepath.Join(r.dir, "logs")); err != nil {
		r.log.Warn("collect logs", "err", err)
	}
}

func (r *runner) progressf(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "kuma-chaos: "+format+"\n", args...)
	}
}

// runProgress prints one progress line every few seconds until done closes.
func (r *runner) runProgress(done <-chan struct{}) {
	if r.cfg.Progress == nil {
		return
	}
	tty := isTerminal(r.cfg.Progress)
	every := 10 * time.Second
	if tty {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			if tty {
				fmt.Fprintln(r.cfg.Progress)
			}
			return
		case <-t.C:
		}
		o := r.rec.Outcomes()
		faults := r.rec.CurrentFaults()
		now := "no fault"
		if len(faults) > 0 {
			now = strings.Join(faults, "; ")
		}
		proxy := ""
		if r.proxies != nil {
			n, failed := r.proxies.traffic.Counts()
			proxy = fmt.Sprintf(" | proxy %d (failed %d)", n, failed)
		}
		line := fmt.Sprintf("[%4.0fs/%.0fs] ops %d (ok %d, fail %d, unknown %d)%s | %s",
			time.Since(r.rec.Start()).Seconds(), r.cfg.Duration.Seconds(), o[history.OK]+o[history.Fail]+o[history.Unknown],
			o[history.OK], o[history.Fail], o[history.Unknown], proxy, now)
		if tty {
			fmt.Fprintf(r.cfg.Progress, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(r.cfg.Progress, line)
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func summaryLine(info RunInfo, h *history.History, verdicts []check.Verdict, passed bool) string {
	st := report.Summarize(h)
	var failed []string
	for _, v := range verdicts {
		if !v.OK() {
			failed = append(failed, v.Checker)
		}
	}
	status := "PASS"
	if !passed {
		status = "FAIL (" + strings.Join(failed, ", ") + ")"
	}
	proxies := ""
	if len(info.Proxies) > 0 {
		proxies = fmt.Sprintf(", %d proxy requests (%d failed) through %d kuma-dp", info.ProxyRequests, info.ProxyFailed, len(info.Proxies))
	}
	return fmt.Sprintf("%s: %d operations (%d ok, %d failed, %d unknown) on %d keys%s, %d faults (%s) over %s on %d replicas (%s), seed %d",
		status, st.Total, st.ByOutcome[history.OK], st.ByOutcome[history.Fail], st.ByOutcome[history.Unknown], st.Keys, proxies,
		len(h.Faults), faultCounts(h), info.Duration, len(info.Replicas), info.Backend, info.Seed)
}

func faultCounts(h *history.History) string {
	fc := report.FaultCounts(h)
	keys := make([]string, 0, len(fc))
	for k := range fc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, fc[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func reportData(info RunInfo, h *history.History, proxy *report.ProxyData, verdicts []check.Verdict, passed bool, summary string) *report.Data {
	proxies := "none"
	if len(info.Proxies) > 0 {
		proxies = fmt.Sprintf("%d kuma-dp (%d pairs)", len(info.Proxies), len(info.Proxies)/2)
	}
	return &report.Data{
		Title:       fmt.Sprintf("kuma-chaos: %s, %d replicas, seed %d", info.Backend, len(info.Replicas), info.Seed),
		Summary:     summary,
		Passed:      passed,
		Replicas:    info.Replicas,
		Verdicts:    verdicts,
		History:     h,
		Unavailable: info.Unavailable,
		HealedAt:    info.HealedAt,
		Notes:       info.Notes,
		Proxy:       proxy,
		Config: [][2]string{
			{"backend", info.Backend},
			{"replicas", strings.Join(info.Replicas, ", ")},
			{"duration", info.Duration},
			{"seed", fmt.Sprint(info.Seed)},
			{"nemeses", info.Nemeses},
			{"clients", fmt.Sprint(info.Clients)},
			{"proxies", proxies},
			{"kuma-cp extra args", info.ExtraArgs},
			{"recovery bound", info.Recovery},
			{"started", h.Start.Format(time.RFC3339)},
		},
	}
}

func writeReport(dir string, d *report.Data) error {
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := report.Render(f, d); err != nil {
		f.Close()
		return fmt.Errorf("report: %w", err)
	}
	return f.Close()
}

func joinKinds(ks []nemesis.Kind) string {
	var s []string
	for _, k := range ks {
		s = append(s, string(k))
	}
	return strings.Join(s, ",")
}

func secs(ns int64) string { return fmt.Sprintf("%.1fs", float64(ns)/1e9) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
