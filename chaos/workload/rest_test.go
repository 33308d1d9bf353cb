package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/api"
	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// fakeCP serves GET, PUT and DELETE /meshes/{name} with Raft-like
// versions, like one kuma-cp. With stale set, every read answers the state
// as it was before the last write of that key: a bug the checkers must see.
type fakeCP struct {
	mu    sync.Mutex
	index uint64
	res   map[string]fakeRes
	prev  map[string]fakeRes
	stale bool
}

type fakeRes struct {
	value   string
	version uint64
	exists  bool
}

func (f *fakeCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := strings.TrimPrefix(r.URL.Path, "/meshes/")
	cur := f.res[name]
	ifMatch, _ := strconv.ParseUint(strings.Trim(r.Header.Get("If-Match"), `"`), 10, 64)
	w.Header().Set("X-Kuma-Index", strconv.FormatUint(f.index, 10))
	switch r.Method {
	case http.MethodGet:
		if f.stale {
			cur = f.prev[name]
		}
		if !cur.exists {
			http.Error(w, `{"title":"Not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, cur.version))
		fmt.Fprintf(w, `{"type":"Mesh","name":%q,"labels":{"v":%q}}`, name, cur.value)
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		var m struct {
			Labels map[string]string `json:"labels"`
		}
		_ = json.Unmarshal(body, &m)
		if ifMatch != 0 && (!cur.exists || cur.version != ifMatch) {
			http.Error(w, `{"title":"Precondition Failed"}`, http.StatusPreconditionFailed)
			return
		}
		f.index++
		f.prev[name] = cur
		f.res[name] = fakeRes{value: m.Labels["v"], version: f.index, exists: true}
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, f.index))
		if cur.exists {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusCreated)
		}
	case http.MethodDelete:
		if !cur.exists {
			http.Error(w, `{"title":"Not found"}`, http.StatusNotFound)
			return
		}
		if ifMatch != 0 && cur.version != ifMatch {
			http.Error(w, `{"title":"Precondition Failed"}`, http.StatusPreconditionFailed)
			return
		}
		f.index++
		f.prev[name] = cur
		delete(f.res, name)
		fmt.Fprint(w, "{}")
	}
}

func runAgainst(t *testing.T, srv *fakeCP) *history.History {
	t.Helper()
	return runAgainstHandler(t, srv, srv.ServeHTTP)
}

// runAgainstHandler runs the workload against handler, which serves from
// srv (reset first).
func runAgainstHandler(t *testing.T, srv *fakeCP, handler http.HandlerFunc) *history.History {
	t.Helper()
	srv.res, srv.prev = map[string]fakeRes{}, map[string]fakeRes{}
	ts := httptest.NewServer(handler)
	defer ts.Close()
	rec := history.NewRecorder()
	w := NewREST(RESTOptions{Clients: 4, Keys: 2, OpsPerKey: 60, MaxOps: 400, Think: time.Millisecond, Timeout: 2 * time.Second})
	env := Env{Targets: func() []Target { return []Target{{Name: "cp-1", API: ts.URL, Incarnation: 1}} }, Recorder: rec, Seed: 7}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Run(ctx, env); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	srv.stale = false // final reads see the truth
	srv.mu.Unlock()
	if err := w.Final(ctx, env); err != nil {
		t.Fatal(err)
	}
	if len(w.Keys()) < 4 {
		t.Errorf("keys were not retired: %v", w.Keys())
	}
	return rec.Snapshot()
}

func TestRESTAgainstCorrectServer(t *testing.T) {
	h := runAgainst(t, &fakeCP{})
	counts := map[history.Kind]int{}
	for _, op := range h.Ops {
		counts[op.Kind]++
		if op.Outcome == history.Unknown {
			t.Errorf("unknown outcome from a healthy server: %+v", op)
		}
	}
	for _, k := range []history.Kind{history.Read, history.Write, history.CAS, history.Delete} {
		if counts[k] == 0 {
			t.Errorf("no %s operation in %v", k, counts)
		}
	}
	mustPassRESTCheckers(t, h)
}

// mustPassRESTCheckers fails t unless the checkers of the REST history
// pass.
func mustPassRESTCheckers(t *testing.T, h *history.History) {
	t.Helper()
	for _, v := range []check.Verdict{
		check.Linearizable(h.Ops, check.LinearizableOptions{}),
		check.LostWrites(h.Ops),
		check.StaleReads(h.Ops),
	} {
		if v.Result != check.Pass {
			t.Errorf("%s", v)
		}
	}
}

func TestRESTAgainstStaleServer(t *testing.T) {
	h := runAgainst(t, &fakeCP{stale: true})
	if v := check.Linearizable(h.Ops, check.LinearizableOptions{}); v.Result != check.Fail {
		t.Errorf("stale reads passed linearizability: %s", v)
	}
	if v := check.StaleReads(h.Ops); v.Result != check.Fail {
		t.Errorf("stale reads passed the stale-read checker: %s", v)
	}
}

func TestOutcomeOfUnreachableReplica(t *testing.T) {
	rec := history.NewRecorder()
	w := NewREST(RESTOptions{Timeout: time.Second})
	// A port nobody listens on: the request is refused before it is sent.
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	cl := &client{id: 1, versions: map[string]uint64{}}
	cl.http = newTestClient()
	op := w.do(context.Background(), rec, cl, Target{Name: "cp-1", API: url}, history.Op{Kind: history.Write, Key: "k", Value: "v"})
	if op.Outcome != history.Fail {
		t.Errorf("refused write: outcome %s (%s)", op.Outcome, op.Error)
	}
	// A server that never answers: the write may have happened.
	block := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer hang.Close()
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	op = w.do(ctx, rec, cl, Target{Name: "cp-1", API: hang.URL}, history.Op{Kind: history.Write, Key: "k", Value: "v"})
	if op.Outcome != history.Unknown {
		t.Errorf("timed out write: outcome %s (%s)", op.Outcome, op.Error)
	}
}

func newTestClient() *api.Client { return api.NewClient(time.Second) }

func TestPickAvoidsUnansweringReplica(t *testing.T) {
	w := NewREST(RESTOptions{Timeout: time.Hour})
	rng := newTestRand()
	targets := []Target{{Name: "cp-1"}, {Name: "cp-2"}, {Name: "cp-3"}}
	w.answered("cp-2", false)
	for range 200 {
		if w.pick(rng, targets, 1).Name == "cp-2" {
			t.Fatal("picked a replica that just failed to answer")
		}
	}
	// Once the avoidance ends, exactly one request probes it.
	w.mu.Lock()
	w.mu.suspect["cp-2"] = time.Now().Add(-time.Millisecond)
	w.mu.Unlock()
	probes := 0
	for range 200 {
		if w.pick(rng, targets, 1).Name == "cp-2" {
			probes++
		}
	}
	if probes != 1 {
		t.Fatalf("%d probes of a suspect replica, want 1", probes)
	}
	w.answered("cp-2", true)
	home := 0
	for range 200 {
		if w.pick(rng, targets, 1).Name == "cp-2" {
			home++
		}
	}
	if home < 120 || home > 190 {
		t.Errorf("home replica picked %d times of 200, want about 80%% plus a third of the rest", home)
	}
	// When every replica is suspect, requests still go somewhere.
	for _, tg := range targets {
		w.answered(tg.Name, false)
	}
	if w.pick(rng, targets, 1).Name == "" {
		t.Error("no target")
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestClassifyWriteAnswers(t *testing.T) {
	const (
		notApplied = `{"type":"/std-errors","title":"No quorum: the control plane cannot accept writes","status":503,"detail":"no leader elected within 2s","mayHaveApplied":false}`
		mayApply   = `{"type":"/std-errors","title":"No quorum: the control plane cannot accept writes","status":503,"detail":"leadership lost while committing","mayHaveApplied":true}`
		silent     = `{"type":"/std-errors","title":"No quorum: the control plane cannot accept writes","status":503,"detail":"no leader elected within 2s"}`
	)
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   history.Outcome
	}{
		{"503 not applied", 503, notApplied, history.Fail},
		{"503 may have applied", 503, mayApply, history.Unknown},
		// The reason text alone no longer decides (it used to).
		{"503 without the field", 503, silent, history.Unknown},
		{"503 with a non-JSON body", 503, "Service Unavailable\n", history.Unknown},
		{"503 with a field of the wrong type", 503, `{"title":"x","mayHaveApplied":"false"}`, history.Unknown},
		{"500 saying not applied", 500, strings.Replace(notApplied, "503", "500", 1), history.Unknown},
		{"502", 502, "bad gateway", history.Unknown},
		{"504", 504, "", history.Unknown},
		{"499", 499, `{"title":"Could not create or update a resource"}`, history.Unknown},
		{"412", 412, `{"title":"Precondition Failed"}`, history.Fail},
		{"409", 409, `{"title":"Conflict"}`, history.Fail},
		{"400", 400, `{"title":"Bad Request"}`, history.Fail},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, kind := range []history.Kind{history.Write, history.CAS, history.Delete} {
				op := history.Op{Kind: kind, IfVersion: 3}
				classify(&op, &api.Response{Status: tt.status, Header: http.Header{}, Body: []byte(tt.body)})
				if op.Outcome != tt.want {
					t.Errorf("%s: outcome %s (%s), want %s", kind, op.Outcome, op.Error, tt.want)
				}
			}
		})
	}
	op := history.Op{Kind: history.Delete}
	classify(&op, &api.Response{Status: 404, Header: http.Header{}, Body: []byte(`{"title":"Not found"}`)})
	if op.Outcome != history.Fail {
		t.Errorf("delete 404: outcome %s", op.Outcome)
	}
}

// TestRESTAgainstUnavailableServer runs the workload against a server that
// refuses every other write with a 503 saying it was not applied, and
// applies (but answers 503 "may have applied" for) some others: the history
// must stay linearizable, and the refused writes must be failures.
func TestRESTAgainstUnavailableServer(t *testing.T) {
	srv := &fakeCP{}
	var n int
	var mu sync.Mutex
	h := runAgainstHandler(t, srv, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			srv.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		switch i % 3 {
		case 0:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"title":"No quorum","status":503,"detail":"no leader","mayHaveApplied":false}`)
		case 1:
			rw := httptest.NewRecorder()
			srv.ServeHTTP(rw, r)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"title":"No quorum","status":503,"detail":"leadership lost while committing","mayHaveApplied":true}`)
		default:
			srv.ServeHTTP(w, r)
		}
	})
	counts := map[history.Outcome]int{}
	for _, op := range h.Ops {
		if op.IsWrite() {
			counts[op.Outcome]++
		}
	}
	if counts[history.Fail] == 0 || counts[history.Unknown] == 0 || counts[history.OK] == 0 {
		t.Errorf("write outcomes %v: want some of each", counts)
	}
	mustPassRESTCheckers(t, h)
}
