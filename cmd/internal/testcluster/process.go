package testcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultStopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const DefaultStopTimeout = 10 * time.Second

// ErrNotRunning is returned by signalling methods when the process is not running.
var ErrNotRunning = errors.New("process not running")

// Process is one child process whose stdout and stderr are appended to
// LogPath. It can be started again after it exited (a restart keeps the
// same arguments). The zero value is not usable: fill Path and LogPath.
type Process struct {
	Name    string   // for messages
	Path    string   // executable
	Args    []string // arguments, without argv[0]
	Env     []string // full environment; nil means the parent's
	Dir     string   // working directory; "" means the parent's
	LogPath string   // stdout and stderr are appended here
	// StopTimeout is how long Stop waits after SIGTERM; 0 means DefaultStopTimeout.
	StopTimeout time.Duration

	mu struct {
		sync.Mutex
		cmd    *exec.Cmd
		doneCh chan struct{} // closed when the current run exited
		err    error         // exit status of the last run
		paused bool
		starts int
	}
}

// Start starts the process. It fails if the process is already running.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.cmd != nil && !isClosed(p.mu.doneCh) {
		return fmt.Errorf("start %s: already running as pid %d", p.Name, p.mu.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", p.Name, err)
	}
	p.mu.starts++
	fmt.Fprintf(logFile, "=== testcluster: start #%d at %s: %s %s\n", p.mu.starts,
		time.Now().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))

	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Dir = p.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a terminal's ^C reaches only the parent, which
		// then stops the children in order.
		Setpgid: true,
		// If the parent dies without cleaning up (SIGKILL, test timeout),
		// the kernel kills the child: no orphans.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	doneCh := make(chan struct{})
	p.mu.cmd = cmd
	p.mu.doneCh = doneCh
	p.mu.err = nil
	p.mu.paused = false
	// The waiter is owned by the process run: it ends when the child exits,
	// which Kill guarantees.
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.mu.err = err
		p.mu.paused = false
		p.mu.Unlock()
		close(doneCh)
	}()
	return nil
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Running reports whether the process has been started and has not exited
// (a paused process is running).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.cmd != nil && !isClosed(p.mu.doneCh)
}

// Paused reports whether the process is stopped by Pause.
func (p *Process) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.paused
}

// PID is the process id of the current (or last) run, 0 if never started.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.cmd == nil {
		return 0
	}
	return p.mu.cmd.Process.Pid
}

// Done returns a channel closed when the current run exits (closed at once if
// not running).
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.doneCh == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return p.mu.doneCh
}

// ExitErr is the exit status of the last run (nil while running or after a clean exit).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.err
}

func (p *Process) signal(sig syscall.Signal) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.cmd == nil || isClosed(p.mu.doneCh) {
		return nil, ErrNotRunning
	}
	if err := p.mu.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return p.mu.doneCh, nil
		}
		return nil, fmt.Errorf("signal %s to %s: %w", sig, p.Name, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.mu.paused = true
	case syscall.SIGCONT:
		p.mu.paused = false
	}
	return p.mu.doneCh, nil
}

// Kill sends SIGKILL and waits until the process has exited. Killing a
// process that is not running is not an error.
func (p *Process) Kill() error {
	done, err := p.signal(syscall.SIGKILL)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	<-done // SIGKILL cannot be caught: the wait is bounded by the kernel.
	return nil
}

// Stop sends SIGTERM (and SIGCONT, so that a paused process sees it), waits
// up to StopTimeout for the process to exit, then kills it. Stopping a process
// that is not running is not an error.
func (p *Process) Stop() error {
	done, err := p.signal(syscall.SIGTERM)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	_, _ = p.signal(syscall.SIGCONT)
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("stop %s: did not exit within %s of SIGTERM, killed", p.Name, timeout)
}

// Pause stops the process with SIGSTOP, as a hung machine would be.
func (p *Process) Pause() error {
	_, err := p.signal(syscall.SIGSTOP)
	return err
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() error {
	_, err := p.signal(syscall.SIGCONT)
	return err
}

// RSS returns the resident set size in bytes (VmRSS from /proc).
func (p *Process) RSS() (int64, error) {
	pid := p.PID()
	if pid == 0 || !p.Running() {
		return 0, ErrNotRunning
	}
	return ProcStatusBytes(pid, "VmRSS")
}

// ProcStatusBytes reads one "kB" field (VmRSS, VmHWM, ...) of
// /proc/<pid>/status and returns it in bytes. pid 0 means this process.
func ProcStatusBytes(pid int, field string) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return parseStatusField(data, field)
}

func parseStatusField(data []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("status field %s: unexpected value %q", field, rest)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status field %s: %w", field, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("status field %s: not found", field)
}

// LogTail returns the last max bytes of the log file.
func (p *Process) LogTail(max int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}
