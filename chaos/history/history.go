// Package history records what a chaos run did: every client operation with
// its invoke and complete times and outcome, and every fault window. It is
// the input of the checkers and the report, and it is written as JSON Lines.
package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kind is what an operation did.
type Kind string

// The operation kinds of the REST workload.
const (
	Read   Kind = "read"   // GET one resource
	Write  Kind = "write"  // unconditional PUT
	CAS    Kind = "cas"    // PUT with If-Match
	Delete Kind = "delete" // DELETE, with If-Match when IfVersion is set
)

// Outcome is how an operation ended, from the client's point of view.
type Outcome string

const (
	// OK: the operation certainly took effect (a write) or returned this
	// value (a read).
	OK Outcome = "ok"
	// Fail: the operation certainly did not take effect (refused before it
	// was sent, or a definite rejection such as 404, 412 or 400).
	Fail Outcome = "fail"
	// Unknown: the request was sent but no definite answer came back
	// (timeout, broken connection, 5xx): a write may or may not have been
	// applied, at any time after its invocation.
	Unknown Outcome = "unknown"
)

// Op is one client operation.
type Op struct {
	ID     int64  `json:"id"`
	Client int    `json:"client"`
	Kind   Kind   `json:"op"`
	Key    string `json:"key"`
	// Value: the value written (write, cas) or read (read, when Found).
	Value string `json:"value,omitempty"`
	// Version: the version a write produced (its ETag), or the version read.
	Version uint64 `json:"version,omitempty"`
	// IfVersion is the If-Match condition of a cas or conditional delete.
	IfVersion uint64 `json:"ifVersion,omitempty"`
	// Found: a read found the resource (false with outcome ok: a 404).
	Found bool `json:"found,omitempty"`
	// Created: a write answered 201 (the resource did not exist).
	Created bool `json:"created,omitempty"`
	// Consistent: a read with ?consistent=true (linearizable by contract).
	Consistent bool `json:"consistent,omitempty"`
	// Invoke and Complete are nanoseconds since the start of the run (a
	// monotonic clock). For an unknown outcome Complete is when the client
	// gave up, not when the operation took effect.
	Invoke   int64   `json:"invoke"`
	Complete int64   `json:"complete"`
	Outcome  Outcome `json:"outcome"`
	Status   int     `json:"status,omitempty"` // HTTP status, 0 without an answer
	Error    string  `json:"error,omitempty"`
	// Replica that the request was sent to, and its incarnation (how many
	// times the harness had started it when the request was sent).
	Replica     string `json:"replica,omitempty"`
	Incarnation int    `json:"incarnation,omitempty"`
	Index       uint64 `json:"index,omitempty"` // X-Kuma-Index of the answer
	// Final marks the reads done after every fault was healed.
	Final bool `json:"final,omitempty"`
}

// Latency is how long the client waited.
func (o Op) Latency() time.Duration { return time.Duration(o.Complete - o.Invoke) }

// IsWrite reports whether the op can change state (write, cas, delete).
func (o Op) IsWrite() bool { return o.Kind == Write || o.Kind == CAS || o.Kind == Delete }

// Fault is one fault window: a nemesis acting from Start until End
// (nanoseconds since the start of the run; End 0 while still active).
type Fault struct {
	Nemesis string   `json:"nemesis"`
	Targets []string `json:"targets,omitempty"`
	Detail  string   `json:"detail,omitempty"`
	Start   int64    `json:"start"`
	End     int64    `json:"end"`
	// DataPlane: the fault may also disturb proxy traffic (a partition or a
	// slow network of the proxies' hosts); faults of control plane
	// processes only leave data plane traffic untouched.
	DataPlane bool   `json:"dataPlane,omitempty"`
	Error     string `json:"error,omitempty"`
}

// History is the full record of a run.
type History struct {
	Start  time.Time // wall clock time of offset 0
	Ops    []Op
	Faults []Fault
}

// Recorder collects operations and faults from concurrent clients. Times are
// taken from one monotonic clock started by NewRecorder.
type Recorder struct {
	start time.Time
	mu    struct {
		sync.Mutex
		nextID   int64
		ops      []Op
		faults   []Fault
		outcomes map[Outcome]int
	}
}

// NewRecorder starts the clock of a run.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Start is the wall clock time of offset 0.
func (r *Recorder) Start() time.Time { return r.start }

// Now is the offset of this moment, in nanoseconds since the start.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Add records a completed operation (Invoke and Complete already set) and
// returns it with its ID.
func (r *Recorder) Add(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.nextID++
	op.ID = r.mu.nextID
	r.mu.ops = append(r.mu.ops, op)
	if r.mu.outcomes == nil {
		r.mu.outcomes = map[Outcome]int{}
	}
	r.mu.outcomes[op.Outcome]++
	return op
}

// Outcomes counts the recorded operations by outcome.
func (r *Recorder) Outcomes() map[Outcome]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[Outcome]int, len(r.mu.outcomes))
	for k, v := range r.mu.outcomes {
		out[k] = v
	}
	return out
}

// CurrentFaults describes the fault windows still open ("kill cp-2").
func (r *Recorder) CurrentFaults() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.mu.faults {
		if f.End == 0 {
			s := f.Nemesis
			if len(f.Targets) > 0 {
				s += " " + strings.Join(f.Targets, ",")
			}
			out = append(out, s)
		}
	}
	return out
}

// Count is how many operations were recorded.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.ops)
}

// BeginFault records the start of a fault window and returns its handle for EndFault.
func (r *Recorder) BeginFault(f Fault) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	f.Start = int64(time.Since(r.start))
	f.End = 0
	r.mu.faults = append(r.mu.faults, f)
	return len(r.mu.faults) - 1
}

// EndFault closes fault window h; err (if any) is recorded with it.
func (r *Recorder) EndFault(h int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h < 0 || h >= len(r.mu.faults) {
		return
	}
	r.mu.faults[h].End = int64(time.Since(r.start))
	if err != nil {
		r.mu.faults[h].Error = err.Error()
	}
}

// SetFaultTargets replaces the targets of fault h (known only once the
// nemesis has resolved "the leader").
func (r *Recorder) SetFaultTargets(h int, targets []string, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h < 0 || h >= len(r.mu.faults) {
		return
	}
	r.mu.faults[h].Targets = slices.Clone(targets)
	if detail != "" {
		r.mu.faults[h].Detail = detail
	}
}

// ActiveFaults counts the fault windows not yet ended.
func (r *Recorder) ActiveFaults() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.mu.faults {
		if f.End == 0 {
			n++
		}
	}
	return n
}

// Snapshot returns a copy of everything recorded so far, operations sorted
// by invocation time. Fault windows still open end now.
func (r *Recorder) Snapshot() *History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := &History{Start: r.start, Ops: slices.Clone(r.mu.ops), Faults: slices.Clone(r.mu.faults)}
	now := int64(time.Since(r.start))
	for i := range h.Faults {
		if h.Faults[i].End == 0 {
			h.Faults[i].End = now
		}
	}
	SortOps(h.Ops)
	return h
}

// SortOps sorts by invocation time, then ID.
func SortOps(ops []Op) {
	slices.SortStableFunc(ops, func(a, b Op) int {
		if a.Invoke != b.Invoke {
			if a.Invoke < b.Invoke {
				return -1
			}
			return 1
		}
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

// line is one JSON Lines record: exactly one of its fields is set.
type line struct {
	Start *time.Time `json:"start,omitempty"`
	Op    *Op        `json:"op,omitempty"`
	Fault *Fault     `json:"fault,omitempty"`
}

// Encode writes h as JSON Lines: a header line with the start time, then one
// line per fault and one per operation.
func (h *History) Encode(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	start := h.Start
	if err := enc.Encode(line{Start: &start}); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	for i := range h.Faults {
		if err := enc.Encode(line{Fault: &h.Faults[i]}); err != nil {
			return fmt.Errorf("write history: %w", err)
		}
	}
	for i := range h.Ops {
		if err := enc.Encode(line{Op: &h.Ops[i]}); err != nil {
			return fmt.Errorf("write history: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

// Save writes h to path (see Encode).
func (h *History) Save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	if err := h.Encode(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write history %s: %w", path, err)
	}
	return nil
}

// Decode parses what Encode wrote.
func Decode(r io.Reader) (*History, error) {
	h := &History{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("read history: line %d: %w", n, err)
		}
		switch {
		case l.Start != nil:
			h.Start = *l.Start
		case l.Op != nil:
			h.Ops = append(h.Ops, *l.Op)
		case l.Fault != nil:
			h.Faults = append(h.Faults, *l.Fault)
		default:
			return nil, fmt.Errorf("read history: line %d: neither start, op nor fault", n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	if n == 0 {
		return nil, errors.New("read history: empty input")
	}
	return h, nil
}

// Load reads a history file.
func Load(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer f.Close()
	return Decode(f)
}
