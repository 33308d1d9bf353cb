package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/kumactl/internal/config"
)

// fixedNow is the clock of every test; resources in fixtures were modified
// at fixedNow minus a known age.
var fixedNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type request struct {
	Method      string
	Path        string // with the query
	ContentType string
	Body        string
}

// fakeCP is a control plane replica answering from a route table.
type fakeCP struct {
	*httptest.Server
	mu struct {
		sync.Mutex
		requests []request
	}
}

type route struct {
	status int
	body   string
}

func newFakeCP(t *testing.T, routes map[string]route) *fakeCP {
	t.Helper()
	f := &fakeCP{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.mu.requests = append(f.mu.requests, request{Method: r.Method, Path: r.URL.RequestURI(), ContentType: r.Header.Get("Content-Type"), Body: string(body)})
		f.mu.Unlock()
		rt, ok := routes[r.Method+" "+r.URL.RequestURI()]
		if !ok {
			rt, ok = routes[r.Method+" *"]
		}
		if !ok {
			rt = route{status: http.StatusNotFound, body: `{"type":"/std-errors","status":404,"title":"Not found","detail":"Not found"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rt.status)
		_, _ = io.WriteString(w, rt.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeCP) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.mu.requests...)
}

// closedAddress returns an http URL on which nothing listens.
func closedAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// writeConfig writes a config whose active control plane has these
// addresses and returns its path.
func writeConfig(t *testing.T, addrs ...string) string {
	t.Helper()
	cfg := &config.Config{}
	cfg.AddControlPlane(config.NewControlPlane("test", addrs), false)
	path := filepath.Join(t.TempDir(), "config")
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	stdout, stderr string
	code           int
}

// kumactl runs one invocation in process.
func kumactl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	rc := newRootContext()
	rc.now = func() time.Time { return fixedNow }
	var out, errb bytes.Buffer
	code := runWith(context.Background(), rc, args, strings.NewReader(stdin), &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}
