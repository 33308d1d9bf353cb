package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Hidden subcommands: the snapshot benchmark runs each half in a fresh
// process so that peak RSS belongs to that half alone.
const (
	cmdSnapshotFill    = "__snapshot-fill"
	cmdSnapshotRestore = "__snapshot-restore"
)

// snapshotTime is the clock every command carries: the FSM reads no other.
var snapshotTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// fillResult is what the fill child prints.
type fillResult struct {
	Count          int           `json:"count"`
	Fill           time.Duration `json:"fill"`
	Snapshot       time.Duration `json:"snapshot"`
	Bytes          int64         `json:"bytes"`
	RSSBefore      int64         `json:"rssBefore"`
	PeakRSS        int64         `json:"peakRSS"` // VmHWM reset just before the snapshot
	PeakResetWorks bool          `json:"peakResetWorks"`
}

// restoreResult is what the restore child prints.
type restoreResult struct {
	Count   int           `json:"count"`
	Restore time.Duration `json:"restore"`
	PeakRSS int64         `json:"peakRSS"` // VmHWM of the whole child
}

// runSnapshotChild runs a hidden subcommand and prints its result as JSON.
func runSnapshotChild(cmd string, args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	n := fs.Int("count", 100_000, "Dataplanes")
	file := fs.String("file", "", "snapshot file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(os.Stderr, cmd+": --file is required")
		return 2
	}
	var (
		res any
		err error
	)
	switch cmd {
	case cmdSnapshotFill:
		res, err = snapshotFill(*n, *file)
	default:
		res, err = snapshotRestore(*file)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, cmd+":", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, cmd+":", err)
		return 1
	}
	return 0
}

func childFSM() *fsm.FSM {
	return fsm.New(fsm.Options{
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnFatal: func(err error) { fmt.Fprintln(os.Stderr, "fsm fatal:", err); os.Exit(1) },
	})
}

// putCommand encodes a put of one decoded, defaulted resource document.
func putCommand(doc []byte) ([]byte, error) {
	r, err := resource.Decode(doc, resource.JSON)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", doc, err)
	}
	resource.Default(r)
	if verrs := resource.Validate(r); len(verrs) > 0 {
		return nil, fmt.Errorf("validate %s: %w", r.Key(), verrs)
	}
	data, err := fsm.Encode(fsm.Command{Type: fsm.CmdPut, Time: snapshotTime, Put: &fsm.PutCommand{Resource: r}})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.Key(), err)
	}
	return data, nil
}

func apply(f *fsm.FSM, index uint64, data []byte) error {
	res := f.Apply(index, data)
	if res == nil {
		return fmt.Errorf("apply index %d: no result", index)
	}
	if res.Err != nil {
		return fmt.Errorf("apply index %d: %w", index, res.Err)
	}
	return nil
}

func snapshotFill(n int, file string) (*fillResult, error) {
	f := childFSM()
	mesh, err := putCommand([]byte(`{"type":"Mesh","name":"default"}`))
	if err != nil {
		return nil, err
	}
	if err := apply(f, 1, mesh); err != nil {
		return nil, err
	}
	start := time.Now()
	for i := range n {
		data, err := putCommand(snapshotDoc(i))
		if err != nil {
			return nil, err
		}
		if err := apply(f, uint64(i)+2, data); err != nil {
			return nil, err
		}
	}
	res := &fillResult{Count: f.Count(), Fill: time.Since(start)}
	if res.Count != n+1 {
		return nil, fmt.Errorf("state holds %d resources after %d puts, want %d", res.Count, n+1, n+1)
	}
	runtime.GC()
	if res.RSSBefore, err = testcluster.ProcStatusBytes(0, "VmRSS"); err != nil {
		return nil, err
	}
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0),
	// so the peak below is the snapshot's, on top of the state.
	res.PeakResetWorks = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

	start = time.Now()
	out, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	snap := f.Snapshot()
	if snap == nil {
		return nil, errors.New("Snapshot returned nil")
	}
	// Buffered and fsync'ed, as raft's file snapshot sink does.
	w := bufio.NewWriterSize(out, 64<<10)
	if _, err := snap.WriteTo(w); err != nil {
		return nil, fmt.Errorf("snapshot write: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if err := out.Sync(); err != nil {
		return nil, err
	}
	snap.Release()
	res.Snapshot = time.Since(start)
	fi, err := out.Stat()
	if err != nil {
		return nil, err
	}
	res.Bytes = fi.Size()
	if res.PeakRSS, err = testcluster.ProcStatusBytes(0, "VmHWM"); err != nil {
		return nil, err
	}
	return res, nil
}

func snapshotRestore(file string) (*restoreResult, error) {
	f := childFSM()
	in, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	start := time.Now()
	if err := f.Restore(bufio.NewReaderSize(in, 64<<10)); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	res := &restoreResult{Restore: time.Since(start), Count: f.Count()}
	if res.PeakRSS, err = testcluster.ProcStatusBytes(0, "VmHWM"); err != nil {
		return nil, err
	}
	return res, nil
}

// runChild re-executes this binary with a hidden subcommand and decodes its
// JSON answer. The child dies with us (parent-death signal) and with ctx.
func runChild(ctx context.Context, out any, args ...string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("%s: decode answer %q: %w", args[0], stdout.String(), err)
	}
	return nil
}

func benchSnapshot(ctx context.Context, cfg *config) (string, error) {
	m := probeMachine(ctx, cfg)
	at := time.Now()
	dir, cleanup, err := cfg.tempDir("snapshot")
	if err != nil {
		return "", err
	}
	defer cleanup()
	file := filepath.Join(dir, "state.snap")
	var fill fillResult
	if err := runChild(ctx, &fill, cmdSnapshotFill, "--count", fmt.Sprint(cfg.count), "--file", file); err != nil {
		return "", err
	}
	cfg.log.Info("snapshot taken", "resources", fill.Count, "took", fill.Snapshot, "bytes", fill.Bytes, "peak_rss", fill.PeakRSS)
	var rest restoreResult
	if err := runChild(ctx, &rest, cmdSnapshotRestore, "--file", file); err != nil {
		return "", err
	}
	cfg.log.Info("snapshot restored", "resources", rest.Count, "took", rest.Restore, "peak_rss", rest.PeakRSS)
	if rest.Count != fill.Count {
		return "", fmt.Errorf("restored %d resources, snapshot held %d", rest.Count, fill.Count)
	}
	return snapshotReport(cfg, m, at, &fill, &rest), nil
}

func snapshotReport(cfg *config, m machine, at time.Time, fill *fillResult, rest *restoreResult) string {
	var b strings.Builder
	b.WriteString("## " + sectionTitle("snapshot") + "\n\n")
	b.WriteString(provenance(cfg.cmdline, at, m, cfg.quick))
	fmt.Fprintf(&b, "\nState: 1 Mesh + %d Dataplanes (%d resources), filled through Apply in %s. Snapshot file: %s.\n\n",
		fill.Count-1, fill.Count, fill.Fill.Round(time.Millisecond), fmtBytes(fill.Bytes))
	peakNote := "VmHWM reset just before the snapshot; includes the state"
	if !fill.PeakResetWorks {
		peakNote = "VmHWM could not be reset: this is the peak of fill and snapshot together"
	}
	b.WriteString(table([]string{"step", "time", "peak RSS", "notes"}, [][]string{
		{"snapshot (Snapshot + WriteTo + fsync)", fmtDur(fill.Snapshot), fmtBytes(fill.PeakRSS),
			fmt.Sprintf("%s; RSS before: %s", peakNote, fmtBytes(fill.RSSBefore))},
		{"restore (Restore from the file)", fmtDur(rest.Restore), fmtBytes(rest.PeakRSS), "fresh process; VmHWM of the whole process"},
	}))
	return b.String()
}

// snapshotDoc is the i-th Dataplane of the snapshot state: distinct names
// and addresses, 100 services.
func snapshotDoc(i int) []byte {
	return fmt.Appendf(nil, `{"type":"Dataplane","mesh":"default","name":"dp-%07d","networking":{"address":"10.%d.%d.%d",`+
		`"inbound":[{"port":8080,"servicePort":8081,"tags":{"kuma.io/service":"backend-%d","kuma.io/protocol":"http","version":"v1"}}]}}`,
		i, i>>16&255, i>>8&255, i&255, i%100)
}
