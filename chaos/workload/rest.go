package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/api"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// RESTOptions configure the REST workload.
type RESTOptions struct {
	Clients int // concurrent clients; 0 means 8
	// Keys is how many keys are in use at a time; 0 means 5.
	Keys int
	// OpsPerKey retires a key after this many operations and takes a fresh
	// one, which keeps every key's history short enough for the
	// linearizability search; 0 means 250.
	OpsPerKey int
	// MaxUnknownPerKey retires a key once this many of its writes have an
	// unknown outcome: each may take effect at any later time, and the
	// linearizability search grows exponentially with them; 0 means 8.
	MaxUnknownPerKey int
	// MaxOps bounds the operations of the whole run; 0 means 200000.
	MaxOps int
	// Think is each client's mean pause between operations; 0 means 30ms.
	Think time.Duration
	// Timeout bounds one operation; 0 means 3s. A write that times out has
	// an unknown outcome.
	Timeout time.Duration
}

func (o *RESTOptions) defaults() {
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Keys <= 0 {
		o.Keys = 5
	}
	if o.OpsPerKey <= 0 {
		o.OpsPerKey = 250
	}
	if o.MaxUnknownPerKey <= 0 {
		o.MaxUnknownPerKey = 8
	}
	if o.MaxOps <= 0 {
		o.MaxOps = 200000
	}
	if o.Think <= 0 {
		o.Think = 30 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
}

// REST reads and writes Mesh resources (one per key: a Mesh is the simplest
// resource, a label holds the value) through the REST API of random
// replicas: plain and ?consistent=true reads, unconditional PUTs, PUTs with
// If-Match (a version the client saw), and deletes with and without
// If-Match.
type REST struct {
	opts RESTOptions

	mu struct {
		sync.Mutex
		slots   []keySlot
		nextKey int
		used    []string // every key ever handed out
		issued  int
		suspect map[string]time.Time // replica -> avoid until (see pick)
	}
}

type keySlot struct {
	key     string
	left    int // operations before retirement
	unknown int // writes with an unknown outcome
}

// NewREST returns the REST workload.
func NewREST(opts RESTOptions) *REST {
	opts.defaults()
	w := &REST{opts: opts}
	w.mu.suspect = map[string]time.Time{}
	for range opts.Keys {
		w.mu.slots = append(w.mu.slots, w.newSlotLocked())
	}
	return w
}

func (w *REST) newSlotLocked() keySlot {
	k := fmt.Sprintf("chaos-%d", w.mu.nextKey)
	w.mu.nextKey++
	w.mu.used = append(w.mu.used, k)
	return keySlot{key: k, left: w.opts.OpsPerKey}
}

// Name is "rest".
func (w *REST) Name() string { return "rest" }

// Keys returns every key used so far.
func (w *REST) Keys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.mu.used...)
}

// takeKey picks a key for one operation, or reports that the run's
// operation bound is reached.
func (w *REST) takeKey(rng *rand.Rand) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.issued >= w.opts.MaxOps {
		return "", false
	}
	w.mu.issued++
	i := rng.IntN(len(w.mu.slots))
	s := &w.mu.slots[i]
	k := s.key
	s.left--
	if s.left <= 0 {
		*s = w.newSlotLocked()
	}
	return k, true
}

// noteUnknown counts a write with an unknown outcome against its key and
// retires the key when it has too many.
func (w *REST) noteUnknown(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.mu.slots {
		s := &w.mu.slots[i]
		if s.key != key {
			continue
		}
		s.unknown++
		if s.unknown >= w.opts.MaxUnknownPerKey {
			*s = w.newSlotLocked()
		}
		return
	}
}

// Run starts the clients and waits for them.
func (w *REST) Run(ctx context.Context, env Env) error {
	var wg sync.WaitGroup
	for c := range w.opts.Clients {
		wg.Go(func() { w.runClient(ctx, env, c) })
	}
	wg.Wait()
	return nil
}

// client is one worker's state.
type client struct {
	id       int
	rng      *rand.Rand
	http     *api.Client
	seq      int
	versions map[string]uint64 // last version this client saw per key
}

// AvoidFor is how long the clients prefer other replicas after one did not
// answer, or was slow: SuspectAfter without an answer is enough to keep the
// other clients away while the request still waits for its timeout.
const (
	AvoidFor     = 2 * time.Second
	SuspectAfter = 500 * time.Millisecond
)

// pick chooses a target: mostly the client's home replica (client i
// prefers replica i mod N, as Jepsen binds clients to nodes), otherwise a
// random one, and never, while another answers, a replica that recently
// did not answer. The clients share what they learn, as a client library
// with several addresses would: a replica that did not answer (or was slow,
// see SuspectAfter) is avoided for AvoidFor, then one request probes it
// while the others keep away. Without this every client soon waits on a
// paused replica and the healthy ones see no load, which would hide the
// cluster's real availability.
func (w *REST) pick(rng *rand.Rand, targets []Target, home int) Target {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	ok := make([]Target, 0, len(targets))
	for _, t := range targets {
		if now.After(w.mu.suspect[t.Name]) {
			ok = append(ok, t)
		}
	}
	if len(ok) == 0 {
		ok = targets
	}
	t := ok[rng.IntN(len(ok))]
	if h := targets[home%len(targets)]; rng.IntN(100) < 80 && slices.ContainsFunc(ok, func(o Target) bool { return o.Name == h.Name }) {
		t = h
	}
	if _, suspect := w.mu.suspect[t.Name]; suspect {
		w.mu.suspect[t.Name] = now.Add(w.opts.Timeout) // the probe is in flight
	}
	return t
}

// answered records whether a replica answered a request.
func (w *REST) answered(name string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok {
		delete(w.mu.suspect, name)
		return
	}
	w.mu.suspect[name] = time.Now().Add(AvoidFor)
}

func (w *REST) runClient(ctx context.Context, env Env, id int) {
	c := &client{
		id:       id,
		rng:      rand.New(rand.NewPCG(env.Seed, uint64(id)+1)),
		http:     api.NewClient(w.opts.Timeout),
		versions: map[string]uint64{},
	}
	defer c.http.Close()
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		key, ok := w.takeKey(c.rng)
		if !ok {
			return
		}
		targets := env.Targets()
		if len(targets) == 0 {
			return
		}
		t := w.pick(c.rng, targets, c.id)
		op := w.randomOp(c, key)
		if op.Kind == history.CAS {
			// Read first, as a client updating a resource does, so that
			// most conditional writes carry a current version; the read
			// is an operation of the history like any other.
			read := history.Op{Client: c.id, Kind: history.Read, Key: key}
			octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Timeout)
			got := w.do(octx, env.Recorder, c, t, read)
			cancel()
			if got.Outcome == history.OK && got.Found {
				op.IfVersion = got.Version
			}
		}
		// An operation in flight finishes even when ctx ends: its outcome
		// belongs in the history.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Timeout)
		if got := w.do(octx, env.Recorder, c, t, op); got.IsWrite() && got.Outcome == history.Unknown {
			w.noteUnknown(key)
		}
		cancel()
		think := w.opts.Think/2 + time.Duration(c.rng.Int64N(int64(w.opts.Think)))
		select {
		case <-ctx.Done():
		case <-time.After(think):
		}
	}
}

// randomOp draws the next operation: 20% plain reads, 20% consistent
// reads, 25% writes, 25% conditional writes, 10% deletes (half conditional).
func (w *REST) randomOp(c *client, key string) history.Op {
	op := history.Op{Client: c.id, Key: key}
	n := c.rng.IntN(100)
	switch {
	case n < 20:
		op.Kind = history.Read
	case n < 40:
		op.Kind, op.Consistent = history.Read, true
	case n < 65:
		op.Kind = history.Write
	case n < 90:
		op.Kind = history.CAS
		op.IfVersion = c.versions[key]
		if op.IfVersion == 0 {
			op.IfVersion = 1 // certainly stale: exercises the 412 path
		}
	default:
		op.Kind = history.Delete
		if c.rng.IntN(2) == 0 {
			op.IfVersion = c.versions[key]
		}
	}
	if op.Kind == history.Write || op.Kind == history.CAS {
		c.seq++
		op.Value = "c" + strconv.Itoa(c.id) + "-" + strconv.Itoa(c.seq)
	}
	return op
}

// do performs op against t, records it and returns the record.
func (w *REST) do(ctx context.Context, rec *history.Recorder, c *client, t Target, op history.Op) history.Op {
	op.Replica, op.Incarnation = t.Name, t.Incarnation
	url := t.API + "/meshes/" + op.Key
	var (
		method string
		body   []byte
		header = http.Header{}
	)
	switch op.Kind {
	case history.Read:
		method = http.MethodGet
		if op.Consistent {
			url += "?consistent=true"
		}
	case history.Write, history.CAS:
		method = http.MethodPut
		body, _ = json.Marshal(map[string]any{"type": "Mesh", "name": op.Key, "labels": map[string]string{"v": op.Value}})
		if op.Kind == history.CAS {
			header.Set("If-Match", `"`+strconv.FormatUint(op.IfVersion, 10)+`"`)
		}
	case history.Delete:
		method = http.MethodDelete
		if op.IfVersion != 0 {
			header.Set("If-Match", `"`+strconv.FormatUint(op.IfVersion, 10)+`"`)
		}
	}
	slow := time.AfterFunc(SuspectAfter, func() { w.answered(t.Name, false) })
	op.Invoke = rec.Now()
	resp, err := c.http.Do(ctx, method, url, body, header)
	op.Complete = rec.Now()
	slow.Stop()
	if err != nil {
		var se *api.SendError
		op.Outcome = history.Unknown
		if errors.As(err, &se) && !se.Sent {
			op.Outcome = history.Fail
		}
		op.Error = err.Error()
		w.answered(t.Name, false)
		return rec.Add(op)
	}
	w.answered(t.Name, true)
	op.Status = resp.Status
	op.Index = resp.Index()
	classify(&op, resp)
	if op.Outcome == history.OK {
		switch {
		case op.Kind == history.Delete:
			delete(c.versions, op.Key)
		case op.Version != 0:
			c.versions[op.Key] = op.Version
		}
	}
	return rec.Add(op)
}

// classify sets the outcome (and what was read) from an answer. A 5xx (and
// 499) of a write is unknown: a 503 after the leader lost leadership or timed
// out may still be applied later. The exception is a 503 whose body says the
// write was not applied (see writeFailure). Any other answer (404, 409, 412,
// 400) is a definite one.
func classify(op *history.Op, resp *api.Response) {
	s := resp.Status
	switch op.Kind {
	case history.Read:
		switch s {
		case http.StatusOK:
			var m struct {
				Labels map[string]string `json:"labels"`
			}
			if err := json.Unmarshal(resp.Body, &m); err != nil {
				op.Outcome, op.Error = history.Fail, "decode: "+err.Error()
				return
			}
			op.Outcome, op.Found, op.Value, op.Version = history.OK, true, m.Labels["v"], resp.ETag()
		case http.StatusNotFound:
			op.Outcome = history.OK
		default:
			op.Outcome, op.Error = history.Fail, api.ErrorTitle(resp.Body)
		}
	case history.Write, history.CAS:
		switch {
		case s == http.StatusOK || s == http.StatusCreated:
			op.Outcome, op.Version, op.Created = history.OK, resp.ETag(), s == http.StatusCreated
		case s >= 500 || s == 499:
			op.Outcome, op.Error = writeFailure(resp)
		default:
			op.Outcome, op.Error = history.Fail, api.ErrorTitle(resp.Body)
		}
	case history.Delete:
		switch {
		case s == http.StatusOK:
			op.Outcome = history.OK
		case s >= 500 || s == 499:
			op.Outcome, op.Error = writeFailure(resp)
		default:
			op.Outcome, op.Error = history.Fail, api.ErrorTitle(resp.Body)
		}
	}
}

// writeFailure classifies a 5xx (or 499) answer to a write. Only kuma-cp's
// own word makes it a definite failure: a 503 whose body says
// "mayHaveApplied": false (refused before it was proposed). Every other 5xx
// (a 503 that says true or nothing, a 500, a 504 of something in between)
// may have been applied, or may still be: unknown.
func writeFailure(resp *api.Response) (history.Outcome, string) {
	msg := api.ErrorTitle(resp.Body)
	if resp.CertainlyNotApplied() {
		return history.Fail, msg + " (mayHaveApplied: false)"
	}
	return history.Unknown, msg
}

// Final reads every key ever used, consistently, on every replica, retrying
// each read a few times while the cluster settles. The reads are recorded
// with Final set; the lost-writes checker compares them with the
// acknowledged writes.
func (w *REST) Final(ctx context.Context, env Env) error {
	c := &client{id: -1, http: api.NewClient(w.opts.Timeout), versions: map[string]uint64{}}
	defer c.http.Close()
	var missing []string
	for _, t := range env.Targets() {
		for _, key := range w.Keys() {
			ok := false
			for attempt := 0; attempt < 10 && !ok && ctx.Err() == nil; attempt++ {
				op := history.Op{Client: -1, Kind: history.Read, Consistent: true, Key: key, Final: true}
				octx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
				got := w.do(octx, env.Recorder, c, t, op)
				cancel()
				ok = got.Outcome == history.OK
				if !ok {
					select {
					case <-ctx.Done():
					case <-time.After(200 * time.Millisecond):
					}
				}
			}
			if !ok {
				missing = append(missing, t.Name+"/"+key)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("final reads failed for %d keys (first: %s)", len(missing), missing[0])
	}
	return ctx.Err()
}
