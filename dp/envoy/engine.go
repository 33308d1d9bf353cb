package envoy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
)

// Defaults of the Options fields left zero.
const (
	DefaultDrainTime  = 30 * time.Second
	DefaultLogLevel   = "info"
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 15 * time.Second
	DefaultKillAfter  = 10 * time.Second
)

// Files the engine writes in its WorkDir.
const (
	BootstrapFile    = "bootstrap.yaml"
	AdminAddressFile = "admin-address" // written by Envoy (--admin-address-path)
)

const (
	// healthyRun: an Envoy that ran this long before exiting is restarted
	// after MinBackoff again, not after the backoff its earlier crashes made.
	healthyRun = 30 * time.Second
	// adminTimeout bounds each admin request of Status and of the drain.
	adminTimeout = time.Second
	// drainPoll is how often Shutdown looks at the active connections.
	drainPoll = 100 * time.Millisecond
	// waitDelay bounds how long output pipes held by a child of Envoy keep
	// its exit from being noticed.
	waitDelay = time.Second
	// logFormat makes Envoy's log lines "level|message": kuma-dp's log adds
	// the time.
	logFormat = "%l|%v"
)

// ErrClosed is returned by Start and Apply after Shutdown.
var ErrClosed = errors.New("envoy: shut down")

// Options configures an Engine. Binary and NodeID are required.
type Options struct {
	// Binary is Envoy's executable.
	Binary string
	// NodeID is the proxy's node id, "{mesh}.{name}".
	NodeID string
	// Cluster is Envoy's node.cluster: the Dataplane's first kuma.io/service
	// tag ("" for none).
	Cluster string
	// AdminAddr is Envoy's admin address, ip:port [DefaultAdminAddr]; with
	// port 0 Envoy picks one and writes it to WorkDir/AdminAddressFile.
	AdminAddr string
	// DrainTime is Envoy's --drain-time-s: how long connections of
	// listeners removed or changed by an update may finish [30s].
	// Shutdown's drain is bounded by its ctx instead.
	DrainTime time.Duration
	// Logger receives the engine's state changes and Envoy's output (with
	// component=envoy); nil: slog.Default().
	Logger *slog.Logger
	// LogLevel is Envoy's --log-level [info].
	LogLevel string
	// WorkDir holds the bootstrap; "" makes a temporary directory that
	// Shutdown removes.
	WorkDir string
	// ExtraArgs are appended to Envoy's command line.
	ExtraArgs []string
	// RelayAddr is where the relay listens [DefaultRelayAddr].
	RelayAddr string
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// before Envoy is restarted after an unexpected exit [500ms, 15s].
	MinBackoff, MaxBackoff time.Duration
	// KillAfter is how long Shutdown waits for Envoy to exit after SIGTERM
	// before it kills it [10s].
	KillAfter time.Duration
}

// Engine runs Envoy, fed by a Relay, as the agent's Engine.
type Engine struct {
	opts     Options
	base     *slog.Logger // Options.Logger, for the relay
	log      *slog.Logger
	envoyLog *slog.Logger
	hc       *http.Client
	stopCh   chan struct{} // closed by Shutdown once Envoy is gone: the supervisor returns
	wg       sync.WaitGroup

	lifeMu sync.Mutex // serialises Start and Shutdown
	mu     struct {
		sync.Mutex
		pending  *proxy.Config // applied before Start
		relay    *Relay
		proc     *process // the current (or last) Envoy
		workDir  string
		tempDir  bool
		started  bool
		stopping bool
		restarts int
	}
}

// process is one run of Envoy.
type process struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{} // closed once it has exited and its output is logged
	err     error         // Wait's; read after done

	mu    sync.Mutex
	admin string // its admin address, once known
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// New checks opts; Start runs Envoy.
func New(opts Options) (*Engine, error) {
	var errs []error
	if opts.Binary == "" {
		errs = append(errs, errors.New("Binary: required"))
	}
	if err := checkNodeID(opts.NodeID); err != nil {
		errs = append(errs, err)
	}
	opts.AdminAddr = cmp.Or(opts.AdminAddr, DefaultAdminAddr)
	if _, err := parseAddr(opts.AdminAddr); err != nil {
		errs = append(errs, fmt.Errorf("AdminAddr: %w", err))
	}
	if opts.DrainTime < 0 || opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.KillAfter < 0 {
		errs = append(errs, errors.New("DrainTime, MinBackoff, MaxBackoff, KillAfter: must not be negative"))
	}
	opts.DrainTime = cmp.Or(opts.DrainTime, DefaultDrainTime)
	opts.LogLevel = cmp.Or(opts.LogLevel, DefaultLogLevel)
	opts.RelayAddr = cmp.Or(opts.RelayAddr, DefaultRelayAddr)
	opts.MinBackoff = cmp.Or(opts.MinBackoff, DefaultMinBackoff)
	opts.MaxBackoff = cmp.Or(opts.MaxBackoff, DefaultMaxBackoff)
	opts.KillAfter = cmp.Or(opts.KillAfter, DefaultKillAfter)
	if opts.MaxBackoff < opts.MinBackoff {
		errs = append(errs, fmt.Errorf("MaxBackoff: %s is less than MinBackoff %s", opts.MaxBackoff, opts.MinBackoff))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("envoy: %w", err)
	}
	logger := cmp.Or(opts.Logger, slog.Default())
	opts.ExtraArgs = append([]string(nil), opts.ExtraArgs...)
	return &Engine{
		opts:     opts,
		base:     logger,
		log:      logger.With("component", "envoy-engine", "node", opts.NodeID),
		envoyLog: logger.With("component", "envoy"),
		hc:       newAdminClient(),
		stopCh:   make(chan struct{}),
	}, nil
}

// Start starts the relay (serving the config applied so far, if any),
// writes the bootstrap and starts Envoy, which is restarted whenever it
// exits until Shutdown. It returns once Envoy's process has started, not
// once it serves; an error (the binary cannot be run, the relay cannot
// listen) leaves nothing running. ctx bounds Start only.
func (e *Engine) Start(ctx context.Context) error {
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	switch {
	case e.mu.stopping:
		e.mu.Unlock()
		return ErrClosed
	case e.mu.started:
		e.mu.Unlock()
		return errors.New("envoy: already started")
	}
	e.mu.Unlock()

	dir, temp := e.opts.WorkDir, false
	if dir == "" {
		d, err := os.MkdirTemp("", "kuma-dp-envoy-")
		if err != nil {
			return fmt.Errorf("envoy: work dir: %w", err)
		}
		dir, temp = d, true
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("envoy: work dir: %w", err)
	}
	fail := func(err error) error {
		if temp {
			_ = os.RemoveAll(dir)
		}
		return err
	}
	relay, err := ListenRelay(RelayOptions{NodeID: e.opts.NodeID, Addr: e.opts.RelayAddr, Logger: e.base.With("node", e.opts.NodeID)})
	if err != nil {
		return fail(fmt.Errorf("envoy: %w", err))
	}
	boot, err := Bootstrap(BootstrapOptions{NodeID: e.opts.NodeID, Cluster: e.opts.Cluster, AdminAddr: e.opts.AdminAddr, RelayAddr: relay.Addr()})
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, BootstrapFile), boot, 0o600)
	}
	if err != nil {
		relay.Close()
		return fail(fmt.Errorf("envoy: %w", err))
	}

	e.mu.Lock()
	if e.mu.pending != nil {
		if err := relay.Set(*e.mu.pending); err != nil {
			e.mu.Unlock()
			relay.Close()
			return fail(fmt.Errorf("envoy: %w", err))
		}
		e.mu.pending = nil
	}
	e.mu.relay, e.mu.workDir, e.mu.tempDir, e.mu.started = relay, dir, temp, true
	e.mu.Unlock()

	p, err := e.startProcess()
	if err != nil {
		e.mu.Lock()
		if cfg, ok := relay.Config(); ok { // applied meanwhile: kept for the next Start
			e.mu.pending = &cfg
		}
		e.mu.relay, e.mu.started = nil, false
		e.mu.Unlock()
		relay.Close()
		return fail(err)
	}
	e.wg.Add(1)
	go e.runSupervise(p)
	return nil
}

// args is Envoy's command line. Hot restart is off: kuma-dp restarts Envoy
// itself, and two Envoys with the same base id could not run side by side.
func (e *Engine) args(dir string) []string {
	drain := int((e.opts.DrainTime + time.Second - 1) / time.Second)
	args := []string{
		"-c", filepath.Join(dir, BootstrapFile),
		"--drain-time-s", strconv.Itoa(drain),
		"--parent-shutdown-time-s", strconv.Itoa(drain + 15),
		"--disable-hot-restart",
		"--admin-address-path", filepath.Join(dir, AdminAddressFile),
		"--log-level", e.opts.LogLevel,
		"--log-format", logFormat,
	}
	return append(args, e.opts.ExtraArgs...)
}

// startProcess starts Envoy unless Shutdown has begun.
func (e *Engine) startProcess() (*process, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.stopping {
		return nil, ErrClosed
	}
	dir := e.mu.workDir
	_ = os.Remove(filepath.Join(dir, AdminAddressFile)) // the last run's
	cmd := exec.Command(e.opts.Binary, e.args(dir)...)
	cmd.Dir = dir
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = waitDelay
	out, errOut := &lineLogger{log: e.envoyLog}, &lineLogger{log: e.envoyLog}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("envoy: start %s: %w", e.opts.Binary, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{})}
	out.setLogger(e.envoyLog.With("pid", p.pid))
	errOut.setLogger(e.envoyLog.With("pid", p.pid))
	e.mu.proc = p
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		p.err = cmd.Wait()
		out.flush()
		errOut.flush()
		close(p.done)
	}()
	e.log.Info("Envoy started", "pid", p.pid, "binary", e.opts.Binary, "relay", e.mu.relay.Addr(), "admin", e.opts.AdminAddr)
	return p, nil
}

// runSupervise restarts Envoy after every exit that Shutdown did not ask
// for, with jittered exponential backoff; the relay serves the last config
// to the new process.
func (e *Engine) runSupervise(p *process) {
	defer e.wg.Done()
	failures := 0
	for {
		select {
		case <-p.done:
		case <-e.stopCh:
			return
		}
		if e.isStopping() {
			return
		}
		ran := time.Since(p.started)
		if ran >= healthyRun {
			failures = 0
		}
		e.mu.Lock()
		e.mu.restarts++
		e.mu.Unlock()
		e.log.Warn("Envoy exited unexpectedly; restarting it", "pid", p.pid, "exit", exitString(p.err), "ran", ran.Round(time.Millisecond))
		for {
			failures++
			t := time.NewTimer(e.backoff(failures))
			select {
			case <-t.C:
			case <-e.stopCh:
				t.Stop()
				return
			}
			np, err := e.startProcess()
			if errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				e.log.Error("cannot restart Envoy; trying again", "err", err)
				continue
			}
			p = np
			break
		}
	}
}

// backoff is the wait before restart n (n ≥ 1): MinBackoff doubled per
// failure up to MaxBackoff, then jittered into [d/2, d).
func (e *Engine) backoff(n int) time.Duration {
	d := e.opts.MinBackoff
	for i := 1; i < n && d < e.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, e.opts.MaxBackoff)
	if half := d / 2; half > 0 {
		d = half + rand.N(half)
	}
	return d
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (e *Engine) isStopping() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.stopping
}

// Validate accepts every config: Envoy validates what it receives itself.
// A config Envoy rejects is NACKed to the relay, which logs it at WARN
// (once per type and version) and keeps it; the agent is not told, so the
// control plane sees it ACKed, and Envoy keeps running the previous config
// of that type.
func (e *Engine) Validate(proxy.Config) error { return nil }

// Apply hands cfg to the relay, which sends Envoy what changed. Before
// Start it is kept and served once the relay starts.
func (e *Engine) Apply(cfg proxy.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.stopping {
		return ErrClosed
	}
	if e.mu.relay == nil {
		e.mu.pending = &cfg
		return nil
	}
	return e.mu.relay.Set(cfg)
}

// config is the config last applied.
func (e *Engine) config() proxy.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.relay != nil {
		cfg, _ := e.mu.relay.Config()
		return cfg
	}
	if e.mu.pending != nil {
		return *e.mu.pending
	}
	return proxy.Config{}
}

// running is the current Envoy, nil when none runs.
func (e *Engine) running() *process {
	e.mu.Lock()
	p := e.mu.proc
	e.mu.Unlock()
	if p == nil || p.exited() {
		return nil
	}
	return p
}

// adminAddr is p's admin address: the configured one, or with port 0 the
// one Envoy wrote in the work dir ("" until it has).
func (e *Engine) adminAddr(p *process) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.admin != "" {
		return p.admin
	}
	if ap, err := parseAddr(e.opts.AdminAddr); err == nil && ap.Port() != 0 {
		p.admin = e.opts.AdminAddr
		return p.admin
	}
	e.mu.Lock()
	dir := e.mu.workDir
	e.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(dir, AdminAddressFile))
	if err != nil {
		return ""
	}
	if _, err := parseAddr(strings.TrimSpace(string(b))); err == nil {
		p.admin = strings.TrimSpace(string(b))
	}
	return p.admin
}

// Status asks Envoy's admin (each request bounded by a second) what runs;
// when Envoy is down or does not answer it says what the config says,
// without counters (see buildStatus).
func (e *Engine) Status() proxy.Status {
	cfg := e.config()
	p := e.running()
	if p == nil {
		return buildStatus(cfg, nil)
	}
	addr := e.adminAddr(p)
	if addr == "" {
		return buildStatus(cfg, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*adminTimeout)
	defer cancel()
	v, err := admin{base: "http://" + addr, hc: e.hc}.view(ctx)
	if err != nil {
		e.log.Debug("Envoy's admin does not answer; status from the config", "err", err)
		return buildStatus(cfg, nil)
	}
	return buildStatus(cfg, v)
}

// Info is the engine's own state, for diagnostics.
type Info struct {
	Binary    string      `json:"binary"`
	PID       int         `json:"pid,omitempty"`       // 0 while Envoy is not running
	Restarts  int         `json:"restarts"`            // unexpected exits so far
	AdminAddr string      `json:"adminAddr,omitempty"` // "" until known
	RelayAddr string      `json:"relayAddr,omitempty"`
	Relay     RelayStatus `json:"relay"`
}

// Info returns the engine's state.
func (e *Engine) Info() Info {
	e.mu.Lock()
	info := Info{Binary: e.opts.Binary, Restarts: e.mu.restarts}
	relay := e.mu.relay
	e.mu.Unlock()
	if relay != nil {
		info.RelayAddr, info.Relay = relay.Addr(), relay.Status()
	}
	if p := e.running(); p != nil {
		info.PID, info.AdminAddr = p.pid, e.adminAddr(p)
	}
	return info
}

// Shutdown asks Envoy to stop accepting (POST /drain_listeners: listeners
// close at once, established connections go on), waits until no downstream
// connection is left or ctx ends, then sends SIGTERM (SIGKILL after
// KillAfter), stops the relay and returns once every goroutine of the
// engine has ended. It returns an error wrapping ctx's if connections were
// still open when ctx ended. Later calls return nil at once.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	e.mu.Lock()
	if e.mu.stopping {
		e.mu.Unlock()
		return nil
	}
	e.mu.stopping = true
	p, relay := e.mu.proc, e.mu.relay
	e.mu.Unlock()

	var err error
	if p != nil && !p.exited() {
		err = e.drain(ctx, p)
		e.terminate(p)
	}
	close(e.stopCh)
	e.wg.Wait()
	if relay != nil {
		relay.Close()
	}
	e.mu.Lock()
	dir, temp := e.mu.workDir, e.mu.tempDir
	e.mu.Unlock()
	if temp {
		_ = os.RemoveAll(dir)
	}
	if p != nil {
		e.log.Info("Envoy stopped")
	}
	return err
}

// drain stops Envoy's listeners and waits for their connections.
func (e *Engine) drain(ctx context.Context, p *process) error {
	addr := e.adminAddr(p)
	if addr == "" {
		e.log.Warn("Envoy's admin address is not known yet; stopping it without a drain")
		return nil
	}
	a := admin{base: "http://" + addr, hc: e.hc}
	rctx, cancel := context.WithTimeout(ctx, adminTimeout)
	_, err := a.do(rctx, http.MethodPost, adminDrain)
	cancel()
	if err != nil {
		e.log.Warn("cannot ask Envoy to stop accepting; stopping it without a drain", "err", err)
		return nil
	}
	e.log.Info("draining: Envoy's listeners stopped accepting")
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	var active uint64
	for {
		rctx, cancel := context.WithTimeout(ctx, adminTimeout)
		stats, err := a.stats(rctx)
		cancel()
		if err == nil {
			if active = activeConnections(stats); active == 0 {
				e.log.Info("drained: no connection left")
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shutdown: connections closed before they ended (%d active): %w", active, ctx.Err())
		case <-p.done:
			return nil
		case <-t.C:
		}
	}
}

// terminate stops p: SIGTERM, then SIGKILL after KillAfter.
func (e *Engine) terminate(p *process) {
	if err := p.cmd.Process.Signal(terminateSignal); err != nil && !errors.Is(err, os.ErrProcessDone) {
		e.log.Warn("cannot signal Envoy", "pid", p.pid, "err", err)
	}
	t := time.NewTimer(e.opts.KillAfter)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		e.log.Warn("Envoy did not exit after SIGTERM; killing it", "pid", p.pid, "waited", e.opts.KillAfter)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// lineLogger logs what Envoy writes, a line at a time. Lines in logFormat
// keep Envoy's level; any other line (a crash's backtrace) is logged at
// INFO.
type lineLogger struct {
	mu  sync.Mutex
	log *slog.Logger
	buf []byte
}

// maxLine: a longer line is logged in pieces.
const maxLine = 64 << 10

func (w *lineLogger) setLogger(l *slog.Logger) {
	w.mu.Lock()
	w.log = l
	w.mu.Unlock()
}

func (w *lineLogger) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	rest := w.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		w.emit(rest[:i])
		rest = rest[i+1:]
	}
	if len(rest) >= maxLine {
		w.emit(rest)
		rest = nil
	}
	w.buf = append(w.buf[:0], rest...)
	return len(b), nil
}

func (w *lineLogger) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
}

func (w *lineLogger) emit(line []byte) {
	s := strings.TrimRight(string(line), "\r")
	if strings.TrimSpace(s) == "" {
		return
	}
	level := slog.LevelInfo
	if lv, msg, ok := strings.Cut(s, "|"); ok {
		if l, known := envoyLevels[lv]; known {
			level, s = l, msg
		}
	}
	w.log.Log(context.Background(), level, s)
}

// envoyLevels maps Envoy's (spdlog's) level names to slog's.
var envoyLevels = map[string]slog.Level{
	"trace":    slog.LevelDebug,
	"debug":    slog.LevelDebug,
	"info":     slog.LevelInfo,
	"warning":  slog.LevelWarn,
	"error":    slog.LevelError,
	"critical": slog.LevelError,
}
