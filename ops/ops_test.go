package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// fakeBackend applies commands straight to a real *fsm.FSM, the way a
// single-replica cluster would, and lets tests inject cluster errors.
type fakeBackend struct {
	state *fsm.FSM
	mu    struct {
		sync.Mutex
		applyErr  error
		readErr   error
		removeErr error
		ready     bool
		reason    string
		removed   []string
		reads     int

		visibleErr   error
		visibleWaits int
	}
}

func (b *fakeBackend) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.applyErr != nil {
		return nil, b.mu.applyErr
	}
	index := b.state.AppliedIndex() + 1
	cmd.Time = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(index) * time.Second)
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b.state.Apply(index, data), nil
}

func (b *fakeBackend) ConsistentRead(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.reads++
	return b.mu.readErr
}

func (b *fakeBackend) WaitVisible(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.visibleWaits++
	return b.mu.visibleErr
}

func (b *fakeBackend) Ready() (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.ready, b.mu.reason
}

func (b *fakeBackend) Status() cluster.Status {
	return cluster.Status{Leader: "cp-1", Replicas: []cluster.ReplicaStatus{{Name: "cp-1", Role: "leader", Suffrage: "voter", Healthy: true}}}
}

func (b *fakeBackend) ClusterID() string { return "cluster-abc" }

func (b *fakeBackend) RemoveReplica(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.removeErr != nil {
		return b.mu.removeErr
	}
	b.mu.removed = append(b.mu.removed, name)
	return nil
}

func (b *fakeBackend) set(f func(b *fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func newTestRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

type env struct {
	t       *testing.T
	h       http.Handler
	state   *fsm.FSM
	backend *fakeBackend
}

func newEnv(t *testing.T, mode string) *env {
	t.Helper()
	state := fsm.New(fsm.Options{OnFatal: func(err error) { t.Errorf("fsm fatal: %v", err) }})
	b := &fakeBackend{state: state}
	b.mu.ready = true
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := NewHandler(Config{Hostname: "cp-1", Version: "2.9.0", Mode: mode, Logger: log, Registry: newTestRegistry()}, state, b)
	e := &env{t: t, h: h, state: state, backend: b}
	e.mustStatus(e.do("PUT", "/meshes/default", `{"type":"Mesh","name":"default"}`), http.StatusCreated)
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// do sends one request; headers are name, value pairs. Every answer must carry X-Kuma-Index.
func (e *env) do(method, path, body string, headers ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	idx := rec.Header().Get(HeaderIndex)
	if _, err := strconv.ParseUint(idx, 10, 64); err != nil {
		e.t.Fatalf("%s %s: %s = %q, want a number", method, path, HeaderIndex, idx)
	}
	return rec
}

func (e *env) mustStatus(rec *httptest.ResponseRecorder, want int) *httptest.ResponseRecorder {
	e.t.Helper()
	if rec.Code != want {
		e.t.Fatalf("status = %d, want %d; body: %s", rec.Code, want, rec.Body.String())
	}
	return rec
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) Error {
	t.Helper()
	var e Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, rec.Body.String())
	}
	if e.Type != "/std-errors" || e.Status != rec.Code || e.Title == "" || e.Details != e.Detail {
		t.Fatalf("error body is not Kuma-shaped: %s", rec.Body.String())
	}
	return e
}

func hasField(e Error, field string) bool {
	for _, p := range e.InvalidParameters {
		if p.Field == field {
			return true
		}
	}
	return false
}

func plural(t *testing.T, typ resource.Type) string {
	t.Helper()
	d, ok := resource.DescriptorOf(typ)
	if !ok {
		t.Fatalf("type %s is not registered", typ)
	}
	return d.Plural
}

type listBody struct {
	Total int               `json:"total"`
	Items []json.RawMessage `json:"items"`
	Next  *string           `json:"next"`
}

func decodeList(t *testing.T, rec *httptest.ResponseRecorder) listBody {
	t.Helper()
	var l listBody
	if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
		t.Fatalf("list body: %v: %s", err, rec.Body.String())
	}
	return l
}

func itemNames(t *testing.T, l listBody) []string {
	t.Helper()
	var out []string
	for _, it := range l.Items {
		var m struct{ Mesh, Name string }
		if err := json.Unmarshal(it, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Mesh+"/"+m.Name)
	}
	return out
}

func dataplaneJSON(mesh, name string, port int) string {
	return fmt.Sprintf(`{"type":"Dataplane","mesh":%q,"name":%q,"networking":{"address":"10.0.0.1","inbound":[{"port":%d,"tags":{"kuma.io/service":"web"}}]}}`, mesh, name, port)
}

func TestIndex(t *testing.T) {
	e := newEnv(t, "standalone")
	rec := e.mustStatus(e.do("GET", "/", ""), 200)
	var got map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"hostname": "cp-1", "tagline": "Kuma", "product": "Kuma", "version": "2.9.0",
		"basedOnKuma": "2.9.0", "instanceId": "cp-1", "clusterId": "cluster-abc", "gui": "The gui is not available"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestCRUDEachType(t *testing.T) {
	tests := []struct {
		typ  resource.Type
		mode string
		mesh string // "" for global-scoped types
		name string
		body string
	}{
		{"Mesh", "standalone", "", "m1", `{"type":"Mesh","name":"m1"}`},
		{"Dataplane", "standalone", "default", "dp-1", dataplaneJSON("default", "dp-1", 8080)},
		{"MeshTrafficPermission", "standalone", "default", "mtp-1", `{"type":"MeshTrafficPermission","mesh":"default","name":"mtp-1","spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`},
		{"MeshTimeout", "standalone", "default", "mt-1", `{"type":"MeshTimeout","mesh":"default","name":"mt-1","spec":{"targetRef":{"kind":"Mesh"},"to":[{"targetRef":{"kind":"Mesh"},"default":{"connectionTimeout":"5s","idleTimeout":"1h"}}]}}`},
		{"TrafficRoute", "standalone", "default", "tr-1", `{"type":"TrafficRoute","mesh":"default","name":"tr-1","sources":[{"match":{"kuma.io/service":"*"}}],"destinations":[{"match":{"kuma.io/service":"*"}}],"conf":{"destination":{"kuma.io/service":"*"}}}`},
		{"ZoneIngress", "standalone", "", "zi-1", `{"type":"ZoneIngress","name":"zi-1","networking":{"address":"10.0.0.2","port":10001,"advertisedAddress":"1.2.3.4","advertisedPort":10001}}`},
		{"ZoneEgress", "standalone", "", "ze-1", `{"type":"ZoneEgress","name":"ze-1","networking":{"address":"10.0.0.3","port":10002}}`},
		{"Zone", "global", "", "zone-1", `{"type":"Zone","name":"zone-1","enabled":true}`},
	}
	for _, tc := range tests {
		t.Run(string(tc.typ), func(t *testing.T) {
			e := newEnv(t, tc.mode)
			p := plural(t, tc.typ)
			path := "/" + p + "/" + tc.name
			listPath := "/" + p
			if tc.mesh != "" {
				path = "/meshes/" + tc.mesh + "/" + p + "/" + tc.name
				listPath = "/meshes/" + tc.mesh + "/" + p
			}
			e.mustStatus(e.do("GET", path, ""), 404)

			rec := e.mustStatus(e.do("PUT", path, tc.body), http.StatusCreated)
			if rec.Body.Len() != 0 {
				t.Errorf("PUT body = %q, want empty", rec.Body.String())
			}
			putTag := rec.Header().Get("ETag")
			if rec.Header().Get(HeaderIndex) != strconv.FormatUint(e.state.AppliedIndex(), 10) {
				t.Errorf("PUT %s = %s, applied %d", HeaderIndex, rec.Header().Get(HeaderIndex), e.state.AppliedIndex())
			}

			rec = e.mustStatus(e.do("GET", path, ""), 200)
			if tag := rec.Header().Get("ETag"); tag == "" || tag != putTag {
				t.Errorf("GET ETag = %q, PUT ETag = %q", tag, putTag)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["type"] != string(tc.typ) || got["name"] != tc.name {
				t.Errorf("GET = %s", rec.Body.String())
			}
			if tc.mesh != "" && got["mesh"] != tc.mesh {
				t.Errorf("GET mesh = %v", got["mesh"])
			}

			e.mustStatus(e.do("PUT", path, tc.body), http.StatusOK)

			l := decodeList(t, e.mustStatus(e.do("GET", listPath, ""), 200))
			found := false
			for _, n := range itemNames(t, l) {
				found = found || n == tc.mesh+"/"+tc.name
			}
			if !found || l.Total != len(l.Items) {
				t.Errorf("list %s = %s", listPath, rec.Body.String())
			}

			e.mustStatus(e.do("DELETE", path, ""), 200)
			decodeError(t, e.mustStatus(e.do("GET", path, ""), 404))
			decodeError(t, e.mustStatus(e.do("DELETE", path, ""), 404))
		})
	}
}

func TestPutYAML(t *testing.T) {
	e := newEnv(t, "standalone")
	body := "type: Dataplane\nmesh: default\nname: dp-y\nnetworking:\n  address: 10.0.0.9\n  inbound:\n  - port: 9090\n    tags:\n      kuma.io/service: api\n"
	e.mustStatus(e.do("PUT", "/meshes/default/dataplanes/dp-y", body, "Content-Type", "application/yaml"), 201)
	e.mustStatus(e.do("GET", "/meshes/default/dataplanes/dp-y", ""), 200)
}

func TestPaging(t *testing.T) {
	e := newEnv(t, "standalone")
	e.mustStatus(e.do("PUT", "/meshes/other", `{"type":"Mesh","name":"other"}`), 201)
	for i := 4; i >= 0; i-- { // out of order on purpose
		name := fmt.Sprintf("dp-%d", i)
		e.mustStatus(e.do("PUT", "/meshes/default/dataplanes/"+name, dataplaneJSON("default", name, 8000+i)), 201)
	}
	e.mustStatus(e.do("PUT", "/meshes/other/dataplanes/dp-a", dataplaneJSON("other", "dp-a", 8000)), 201)

	tests := []struct {
		path     string
		total    int
		names    []string
		wantNext string // "" means null
	}{
		{"/meshes/default/dataplanes", 5, []string{"default/dp-0", "default/dp-1", "default/dp-2", "default/dp-3", "default/dp-4"}, ""},
		{"/meshes/default/dataplanes?size=2", 5, []string{"default/dp-0", "default/dp-1"}, "http://example.com/meshes/default/dataplanes?offset=2&size=2"},
		{"/meshes/default/dataplanes?size=2&offset=2", 5, []string{"default/dp-2", "default/dp-3"}, "http://example.com/meshes/default/dataplanes?offset=4&size=2"},
		{"/meshes/default/dataplanes?size=2&offset=4", 5, []string{"default/dp-4"}, ""},
		{"/meshes/default/dataplanes?offset=10", 5, nil, ""},
		{"/dataplanes?size=5", 6, []string{"default/dp-0", "default/dp-1", "default/dp-2", "default/dp-3", "default/dp-4"}, "http://example.com/dataplanes?offset=5&size=5"},
		{"/dataplanes?size=5&offset=5", 6, []string{"other/dp-a"}, ""},
		{"/meshes", 2, []string{"/default", "/other"}, ""},
		{"/meshes/nope/dataplanes", 0, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			l := decodeList(t, e.mustStatus(e.do("GET", tc.path, ""), 200))
			if l.Total != tc.total {
				t.Errorf("total = %d, want %d", l.Total, tc.total)
			}
			if got := strings.Join(itemNames(t, l), ","); got != strings.Join(tc.names, ",") {
				t.Errorf("items = %s, want %s", got, strings.Join(tc.names, ","))
			}
			if l.Items == nil {
				t.Errorf("items is null, want []")
			}
			switch {
			case tc.wantNext == "" && l.Next != nil:
				t.Errorf("next = %q, want null", *l.Next)
			case tc.wantNext != "" && (l.Next == nil || *l.Next != tc.wantNext):
				t.Errorf("next = %v, want %q", l.Next, tc.wantNext)
			}
		})
	}

	bad := []struct{ query, field string }{
		{"size=abc", "size"}, {"size=0", "size"}, {"size=1001", "size"}, {"size=-1", "size"},
		{"offset=-1", "offset"}, {"offset=x", "offset"},
	}
	for _, tc := range bad {
		t.Run(tc.query, func(t *testing.T) {
			for _, p := range []string{"/meshes/default/dataplanes?", "/dataplanes?", "/meshes/default/dataplanes+insights?"} {
				er := decodeError(t, e.mustStatus(e.do("GET", p+tc.query, ""), 400))
				if !hasField(er, tc.field) {
					t.Errorf("%s%s: %+v does not name %s", p, tc.query, er, tc.field)
				}
			}
		})
	}
}

func TestConditionalWrites(t *testing.T) {
	e := newEnv(t, "standalone")
	path := "/meshes/default/dataplanes/dp-1"
	rec := e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8080)), 201)
	v1 := rec.Header().Get("ETag")
	if v1 == "" {
		t.Fatal("no ETag on PUT")
	}
	// Conditional create on an existing resource fails.
	decodeError(t, e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8081), "If-None-Match", "*"), 412))
	// Quoted and unquoted forms both match.
	rec = e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8081), "If-Match", v1), 200)
	v2 := rec.Header().Get("ETag")
	if v2 == v1 {
		t.Fatalf("ETag unchanged after update: %s", v2)
	}
	e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8082), "If-Match", strings.Trim(v2, `"`)), 200)
	v3 := e.mustStatus(e.do("GET", path, ""), 200).Header().Get("ETag")

	before, count := e.state.AppliedIndex(), e.state.Count()
	decodeError(t, e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8083), "If-Match", v1), 412))
	decodeError(t, e.mustStatus(e.do("DELETE", path, "", "If-Match", v1), 412))
	decodeError(t, e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8083), "If-Match", `"0"`), 412))
	decodeError(t, e.mustStatus(e.do("PUT", "/meshes/default/dataplanes/nope", dataplaneJSON("default", "nope", 1), "If-Match", "*"), 412))
	er := decodeError(t, e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8083), "If-Match", "not-a-tag"), 400))
	if !hasField(er, "If-Match") {
		t.Errorf("malformed If-Match: %+v", er)
	}
	decodeError(t, e.mustStatus(e.do("DELETE", path, "", "If-Match", "garbage"), 400))
	if e.state.Count() != count {
		t.Fatalf("rejected writes changed the state: count %d -> %d (index %d -> %d)", count, e.state.Count(), before, e.state.AppliedIndex())
	}
	e.mustStatus(e.do("DELETE", path, "", "If-Match", v3), 200)
	e.mustStatus(e.do("GET", path, ""), 404)
	// Conditional create of a missing resource succeeds.
	e.mustStatus(e.do("PUT", path, dataplaneJSON("default", "dp-1", 8080), "If-None-Match", "*"), 201)
}

func TestBadInput(t *testing.T) {
	big := `{"type":"Mesh","name":"big","labels":{"x":"` + strings.Repeat("a", DefaultMaxBodySize) + `"}}`
	tests := []struct {
		name, method, path, body, contentType string
		status                                int
		field                                 string
	}{
		{"malformed JSON", "PUT", "/meshes/default/dataplanes/dp-1", `{"type":"Dataplane",`, "", 400, "body"},
		{"malformed YAML", "PUT", "/meshes/default/dataplanes/dp-1", "type: Dataplane\n  name: [x\n", "application/yaml", 400, "body"},
		{"empty body", "PUT", "/meshes/default/dataplanes/dp-1", "", "", 400, "body"},
		{"unknown type in body", "PUT", "/meshes/default/dataplanes/dp-1", `{"type":"Frobnicator","mesh":"default","name":"dp-1"}`, "", 400, "type"},
		{"type mismatch", "PUT", "/meshes/default/dataplanes/x", `{"type":"TrafficRoute","mesh":"default","name":"x","sources":[{"match":{"kuma.io/service":"*"}}],"destinations":[{"match":{"kuma.io/service":"*"}}],"conf":{"destination":{"kuma.io/service":"*"}}}`, "", 400, "type"},
		{"name mismatch", "PUT", "/meshes/default/dataplanes/dp-2", dataplaneJSON("default", "dp-1", 8080), "", 400, "name"},
		{"mesh mismatch", "PUT", "/meshes/default/dataplanes/dp-1", dataplaneJSON("other", "dp-1", 8080), "", 400, "mesh"},
		{"mesh on a Mesh", "PUT", "/meshes/m2", `{"type":"Mesh","mesh":"default","name":"m2"}`, "", 400, "mesh"},
		{"oversize body", "PUT", "/meshes/big", big, "", 400, "body"},
		{"port 0", "PUT", "/meshes/default/dataplanes/dp-1", dataplaneJSON("default", "dp-1", 0), "", 400, "networking.inbound[0].port"},
		{"zone outside global", "PUT", "/zones/z1", `{"type":"Zone","name":"z1","enabled":true}`, "", 400, "type"},
		{"bad content type", "PUT", "/meshes/default/dataplanes/dp-1", dataplaneJSON("default", "dp-1", 8080), "a/b; =", 400, "Content-Type"},
		{"unknown plural", "PUT", "/meshes/default/frobs/x", `{}`, "", 404, ""},
		{"unknown plural get", "GET", "/frobs", "", "", 404, ""},
		{"global type under mesh", "GET", "/meshes/default/zoneingresses", "", "", 404, ""},
		{"mesh type at top", "GET", "/dataplanes/dp-1", "", "", 404, ""},
		{"unknown path", "GET", "/a/b/c/d/e/f", "", "", 404, ""},
		{"method not allowed", "POST", "/meshes/default/dataplanes/dp-1", "", "", 405, ""},
		{"bad consistent", "GET", "/meshes?consistent=maybe", "", "", 400, "consistent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "standalone")
			index, count := e.state.AppliedIndex(), e.state.Count()
			var headers []string
			if tc.contentType != "" {
				headers = []string{"Content-Type", tc.contentType}
			}
			er := decodeError(t, e.mustStatus(e.do(tc.method, tc.path, tc.body, headers...), tc.status))
			if tc.field != "" && !hasField(er, tc.field) {
				t.Errorf("error does not name %q: %+v", tc.field, er)
			}
			if tc.name == "unknown plural" && !strings.Contains(er.Detail, "frobs") {
				t.Errorf("404 does not name the path segment: %+v", er)
			}
			if tc.name == "oversize body" && !strings.Contains(er.Detail, strconv.Itoa(DefaultMaxBodySize)) {
				t.Errorf("oversize error does not name the limit: %+v", er)
			}
			if e.state.AppliedIndex() != index || e.state.Count() != count {
				t.Errorf("state changed: index %d -> %d, count %d -> %d", index, e.state.AppliedIndex(), count, e.state.Count())
			}
		})
	}
}

func TestPutIntoMissingMesh(t *testing.T) {
	e := newEnv(t, "standalone")
	count := e.state.Count()
	er := decodeError(t, e.mustStatus(e.do("PUT", "/meshes/nope/dataplanes/dp-1", dataplaneJSON("nope", "dp-1", 8080)), 400))
	if !hasField(er, "mesh") {
		t.Errorf("does not name mesh: %+v", er)
	}
	if e.state.Count() != count {
		t.Errorf("count %d -> %d", count, e.state.Count())
	}
}

func TestClusterErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		title  string
	}{
		{"no quorum", fmt.Errorf("apply: %w", cluster.ErrNoQuorum), 503, TitleNoQuorum},
		{"shutting down", cluster.ErrShuttingDown, 503, ""},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), 503, ""},
		{"unknown", errors.New("disk on fire"), 500, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "standalone")
			e.mustStatus(e.do("PUT", "/meshes/default/dataplanes/dp-1", dataplaneJSON("default", "dp-1", 8080)), 201)
			e.backend.set(func(b *fakeBackend) { b.mu.applyErr = tc.err; b.mu.readErr = tc.err; b.mu.removeErr = tc.err })
			count := e.state.Count()
			for _, req := range [][3]string{
				{"PUT", "/meshes/default/dataplanes/dp-2", dataplaneJSON("default", "dp-2", 8080)},
				{"DELETE", "/meshes/default/dataplanes/dp-1", ""},
				{"PUT", "/meshes/m9", `{"type":"Mesh","name":"m9"}`},
				{"DELETE", "/cluster/replicas/cp-2", ""},
			} {
				er := decodeError(t, e.mustStatus(e.do(req[0], req[1], req[2]), tc.status))
				if tc.title != "" && er.Title != tc.title {
					t.Errorf("%s %s: title = %q, want %q", req[0], req[1], er.Title, tc.title)
				}
			}
			if e.state.Count() != count {
				t.Errorf("count changed %d -> %d", count, e.state.Count())
			}
			// A consistent read that cannot reach the leader is a 503 (never a
			// 500), titled for a read.
			er := decodeError(t, e.mustStatus(e.do("GET", "/meshes/default/dataplanes/dp-1?consistent=true", ""), 503))
			if tc.title == TitleNoQuorum && er.Title != TitleNoQuorumRead {
				t.Errorf("consistent read: title = %q, want %q", er.Title, TitleNoQuorumRead)
			}
			// Plain reads keep working from the local state.
			e.mustStatus(e.do("GET", "/meshes/default/dataplanes/dp-1", ""), 200)
		})
	}
}

func TestConsistentRead(t *testing.T) {
	e := newEnv(t, "standalone")
	e.mustStatus(e.do("GET", "/meshes?consistent=true", ""), 200)
	e.mustStatus(e.do("GET", "/meshes/default?consistent=false", ""), 200)
	e.backend.mu.Lock()
	reads := e.backend.mu.reads
	e.backend.mu.Unlock()
	if reads != 1 {
		t.Fatalf("ConsistentRead calls = %d, want 1", reads)
	}
}

func TestReady(t *testing.T) {
	e := newEnv(t, "standalone")
	rec := e.mustStatus(e.do("GET", "/ready", ""), 200)
	if strings.TrimSpace(rec.Body.String()) != `{"ready":true}` {
		t.Errorf("ready body = %s", rec.Body.String())
	}
	e.backend.set(func(b *fakeBackend) { b.mu.ready, b.mu.reason = false, "catching up with the log" })
	rec = e.mustStatus(e.do("GET", "/ready", ""), 503)
	if !strings.Contains(rec.Body.String(), "catching up with the log") {
		t.Errorf("503 body lacks the reason: %s", rec.Body.String())
	}
}

func TestClusterEndpoints(t *testing.T) {
	e := newEnv(t, "standalone")
	var st cluster.Status
	rec := e.mustStatus(e.do("GET", "/cluster", ""), 200)
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Leader != "cp-1" || len(st.Replicas) != 1 {
		t.Fatalf("GET /cluster = %s (%v)", rec.Body.String(), err)
	}
	e.mustStatus(e.do("DELETE", "/cluster/replicas/cp-3", ""), 200)
	e.backend.mu.Lock()
	removed := e.backend.mu.removed
	e.backend.mu.Unlock()
	if len(removed) != 1 || removed[0] != "cp-3" {
		t.Fatalf("removed = %v", removed)
	}
}

func TestDataplaneOverview(t *testing.T) {
	e := newEnv(t, "standalone")
	for _, n := range []string{"dp-b", "dp-a", "dp-c"} {
		e.mustStatus(e.do("PUT", "/meshes/default/dataplanes/"+n, dataplaneJSON("default", n, 8080)), 201)
	}
	rec := e.mustStatus(e.do("GET", "/meshes/default/dataplanes/dp-a/_overview", ""), 200)
	var ov struct {
		Type, Mesh, Name string
		CreationTime     string
		Dataplane        struct {
			Networking struct {
				Address string
				Inbound []struct{ Port int }
			}
		}
		DataplaneInsight struct {
			Subscriptions []any `json:"subscriptions"`
		} `json:"dataplaneInsight"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ov); err != nil {
		t.Fatal(err)
	}
	if ov.Type != "DataplaneOverview" || ov.Mesh != "default" || ov.Name != "dp-a" || ov.CreationTime == "" ||
		ov.Dataplane.Networking.Address != "10.0.0.1" || len(ov.Dataplane.Networking.Inbound) != 1 ||
		ov.DataplaneInsight.Subscriptions == nil {
		t.Fatalf("overview = %s", rec.Body.String())
	}
	if strings.Contains(rec.Body.String(), `"dataplane":{"type"`) {
		t.Errorf("meta leaked into dataplane: %s", rec.Body.String())
	}
	e.mustStatus(e.do("GET", "/meshes/default/dataplanes/nope/_overview", ""), 404)

	l := decodeList(t, e.mustStatus(e.do("GET", "/meshes/default/dataplanes+insights?size=2", ""), 200))
	if l.Total != 3 || len(l.Items) != 2 || l.Next == nil || !strings.Contains(*l.Next, "offset=2") {
		t.Fatalf("dataplanes+insights = %+v", l)
	}
	if got := strings.Join(itemNames(t, l), ","); got != "default/dp-a,default/dp-b" {
		t.Errorf("items = %s", got)
	}
	l = decodeList(t, e.mustStatus(e.do("GET", "/dataplanes+insights", ""), 200))
	if l.Total != 3 || l.Next != nil {
		t.Fatalf("all dataplanes+insights = %+v", l)
	}
}

func TestResourceTypes(t *testing.T) {
	e := newEnv(t, "standalone")
	rec := e.mustStatus(e.do("GET", "/_resources", ""), 200)
	var out struct {
		Resources []resourceTypeDescription `json:"resources"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range out.Resources {
		if r.Name == "Dataplane" {
			found = r.Path == "dataplanes" && r.Scope == "Mesh"
		}
	}
	if !found {
		t.Fatalf("/_resources = %s", rec.Body.String())
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, "standalone")
	e.mustStatus(e.do("GET", "/meshes/default/dataplanes", ""), 200)
	e.mustStatus(e.do("GET", "/meshes/other/dataplanes", ""), 200)
	e.mustStatus(e.do("GET", "/no/such/path/at/all/x", ""), 404)
	rec := e.mustStatus(e.do("GET", "/metrics", ""), 200)
	body := rec.Body.String()
	for _, want := range []string{
		`kuma_api_requests_total{code="200",method="GET",route="/meshes/{mesh}/{plural}"} 2`,
		`kuma_api_requests_total{code="201",method="PUT",route="/{plural}/{name}"} 1`,
		`kuma_api_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`kuma_api_request_duration_seconds_bucket{code="200",method="GET",route="/meshes/{mesh}/{plural}",le="+Inf"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "/meshes/other/dataplanes") || strings.Contains(body, "/no/such") {
		t.Errorf("metrics are labelled with raw paths")
	}
}

func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t, "standalone")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				name := fmt.Sprintf("dp-%d-%d", i, j)
				req := httptest.NewRequest("PUT", "/meshes/default/dataplanes/"+name, strings.NewReader(dataplaneJSON("default", name, 8080)))
				rec := httptest.NewRecorder()
				e.h.ServeHTTP(rec, req)
				if rec.Code != 201 {
					t.Errorf("PUT %s = %d %s", name, rec.Code, rec.Body.String())
				}
				rec = httptest.NewRecorder()
				e.h.ServeHTTP(rec, httptest.NewRequest("GET", "/meshes/default/dataplanes?size=5", nil))
				if rec.Code != 200 {
					t.Errorf("list = %d", rec.Code)
				}
			}
		}()
	}
	wg.Wait()
	l := decodeList(t, e.mustStatus(e.do("GET", "/meshes/default/dataplanes", ""), 200))
	if l.Total != 80 {
		t.Fatalf("total = %d, want 80", l.Total)
	}
}

// TestReadsWaitVisible: every read first waits until the replica shows the
// writes it answered; a replica that cannot get there says so (503).
func TestReadsWaitVisible(t *testing.T) {
	e := newEnv(t, "standalone")
	e.mustStatus(e.do("GET", "/meshes/default", ""), 200)
	e.backend.mu.Lock()
	waits := e.backend.mu.visibleWaits
	e.backend.mu.visibleErr = fmt.Errorf("%w: entry 7 not applied here yet", cluster.ErrNoQuorum)
	e.backend.mu.Unlock()
	if waits != 1 {
		t.Fatalf("WaitVisible calls = %d, want 1", waits)
	}
	er := decodeError(t, e.mustStatus(e.do("GET", "/meshes/default", ""), 503))
	if er.Title != TitleNoQuorumRead {
		t.Fatalf("title = %q, want %q", er.Title, TitleNoQuorumRead)
	}
	e.mustStatus(e.do("PUT", "/meshes/m2", `{"type":"Mesh","name":"m2"}`), 201) // writes do not wait
}
