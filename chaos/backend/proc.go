package backend

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// errNotRunning is returned when signalling a process that is not running.
var errNotRunning = errors.New("not running")

// proc is one child process that can be started again after it exits. Its
// output is appended to logPath.
type proc struct {
	name    string
	argv    []string // full command line, argv[0] the executable
	logPath string

	mu struct {
		sync.Mutex
		cmd    *exec.Cmd
		doneCh chan struct{}
		paused bool
		starts int
		// exitErr is how the last run ended (cmd.Wait's error, nil for
		// exit status 0); exited is set once it has.
		exitErr error
		exited  bool
	}
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.cmd != nil && !closed(p.mu.doneCh) {
		return fmt.Errorf("start %s: already running", p.name)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.mu.starts++
	fmt.Fprintf(logFile, "=== kuma-chaos: start #%d at %s: %s\n", p.mu.starts, time.Now().Format(time.RFC3339Nano), strings.Join(p.argv, " "))
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // ^C reaches the harness only; it stops the replicas in order
		Pdeathsig: syscall.SIGKILL, // no orphan if the harness dies
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	doneCh := make(chan struct{})
	p.mu.cmd, p.mu.doneCh, p.mu.paused = cmd, doneCh, false
	p.mu.exitErr, p.mu.exited = nil, false
	// The waiter belongs to this run of the process; it ends when the child
	// exits, which kill guarantees.
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.mu.paused = false
		p.mu.exitErr, p.mu.exited = err, true
		p.mu.Unlock()
		close(doneCh)
	}()
	return nil
}

func closed(ch chan struct{}) bool {
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

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.cmd != nil && !closed(p.mu.doneCh)
}

// exit describes how the last run ended: "" while it runs (or never
// ran), "exit status 0", or cmd.Wait's error ("signal: killed").
func (p *proc) exit() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.mu.exited:
		return ""
	case p.mu.exitErr == nil:
		return "exit status 0"
	default:
		return p.mu.exitErr.Error()
	}
}

func (p *proc) paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.paused
}

func (p *proc) starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.starts
}

func (p *proc) signal(sig syscall.Signal) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.cmd == nil || closed(p.mu.doneCh) {
		return nil, errNotRunning
	}
	if err := p.mu.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return p.mu.doneCh, nil
		}
		return nil, fmt.Errorf("signal %s to %s: %w", sig, p.name, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.mu.paused = true
	case syscall.SIGCONT:
		p.mu.paused = false
	}
	return p.mu.doneCh, nil
}

// kill sends SIGKILL and waits for the exit. Not running is not an error.
func (p *proc) kill() error {
	done, err := p.signal(syscall.SIGKILL)
	if errors.Is(err, errNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	<-done // SIGKILL cannot be caught: the kernel bounds this wait.
	return nil
}

// stop sends SIGTERM (and SIGCONT so a paused process sees it), waits up
// to grace, then kills.
func (p *proc) stop(grace time.Duration) error {
	done, err := p.signal(syscall.SIGTERM)
	if errors.Is(err, errNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	_, _ = p.signal(syscall.SIGCONT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	if err := p.kill(); err != nil {
		return err
	}
	return fmt.Errorf("stop %s: still running %s after SIGTERM, killed", p.name, grace)
}

func (p *proc) pause() error {
	_, err := p.signal(syscall.SIGSTOP)
	return err
}

func (p *proc) resume() error {
	_, err := p.signal(syscall.SIGCONT)
	return err
}
