package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type counter struct {
	*httptest.Server
	hits atomic.Int64
}

func server(t *testing.T, status int, body string) *counter {
	t.Helper()
	c := &counter{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(c.Close)
	return c
}

func closed(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return "http://" + a
}

func newClient(t *testing.T, addrs ...string) *Client {
	t.Helper()
	c, err := New(addrs, Options{RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.http.CloseIdleConnections)
	return c
}

func TestDoFailover(t *testing.T) {
	tests := []struct {
		name       string
		firstCode  int // 0: closed port
		wantStatus int
		wantSecond int64
	}{
		{"connection refused moves on", 0, 200, 1},
		{"503 moves on", 503, 200, 1},
		{"404 is an answer", 404, 404, 0},
		{"400 is an answer", 400, 400, 0},
		{"500 is an answer", 500, 500, 0},
		{"2xx is an answer", 201, 201, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first string
			if tc.firstCode == 0 {
				first = closed(t)
			} else {
				first = server(t, tc.firstCode, `{"title":"x"}`).URL
			}
			second := server(t, 200, `{}`)
			c := newClient(t, first, second.URL)
			resp, err := c.Do(context.Background(), http.MethodPut, "/meshes/x", []byte(`{}`), "")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || second.hits.Load() != tc.wantSecond {
				t.Fatalf("status %d (want %d), second hits %d (want %d)", resp.StatusCode, tc.wantStatus, second.hits.Load(), tc.wantSecond)
			}
		})
	}
}

func TestDoTimeoutMovesOn(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	fast := server(t, 200, `{}`)
	c, err := New([]string{slow.URL, fast.URL}, Options{RequestTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.http.CloseIdleConnections()
	resp, err := c.Do(context.Background(), http.MethodGet, "/", nil, "")
	if err != nil || resp.StatusCode != 200 || resp.Address != fast.URL {
		t.Fatalf("resp %+v err %v", resp, err)
	}
}

func TestDoPrefersLastReplicaThatAnswered(t *testing.T) {
	a := server(t, 503, `{"title":"not ready"}`)
	b := server(t, 200, `{}`)
	c := newClient(t, a.URL, b.URL)
	for range 3 {
		if _, err := c.Do(context.Background(), http.MethodGet, "/", nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	if a.hits.Load() != 1 || b.hits.Load() != 3 {
		t.Fatalf("hits a=%d b=%d, want 1 and 3", a.hits.Load(), b.hits.Load())
	}
}

func TestDoAllUnavailable(t *testing.T) {
	a, b := closed(t), closed(t)
	c := newClient(t, a, b)
	_, err := c.Do(context.Background(), http.MethodGet, "/", nil, "")
	var ue *UnavailableError
	if !errors.As(err, &ue) || len(ue.Attempts) != 2 || ue.Attempts[0].Address != a || ue.Attempts[1].Address != b {
		t.Fatalf("err %v", err)
	}

	// Every replica answering 503 returns the 503 itself, for its message.
	s1, s2 := server(t, 503, `{"title":"No quorum"}`), server(t, 503, `{"title":"No quorum"}`)
	c = newClient(t, s1.URL, s2.URL)
	resp, err := c.Do(context.Background(), http.MethodGet, "/", nil, "")
	if err != nil || resp.StatusCode != 503 || APIErrorFrom(resp).Title != "No quorum" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
}

func TestDoCancelledContext(t *testing.T) {
	s := server(t, 200, `{}`)
	c := newClient(t, s.URL)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Do(ctx, http.MethodGet, "/", nil, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestAPIErrorRendering(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{`{"title":"Could not process a resource","detail":"Resource is not valid","invalid_parameters":[{"field":"name","reason":"must not be empty"},{"field":"","reason":"general"}]}`,
			"Could not process a resource (Resource is not valid)\n* name: must not be empty\n* general"},
		{`{"title":"Bad Request","details":"old","causes":[{"field":"mesh","message":"bad"}]}`, "Bad Request (old)\n* mesh: bad"},
		{`plain text failure`, "Bad Request (plain text failure)"},
		{``, "Bad Request"},
	}
	for _, tc := range tests {
		got := APIErrorFrom(&Response{StatusCode: 400, Body: []byte(tc.body)}).Error()
		if got != tc.want {
			t.Errorf("%s:\n%q\nwant\n%q", tc.body, got, tc.want)
		}
	}
	if !IsNotFound(APIErrorFrom(&Response{StatusCode: 404})) || IsNotFound(errors.New("x")) {
		t.Fatal("IsNotFound")
	}
	if !strings.Contains((&UnavailableError{Attempts: []AttemptError{{"http://a", errors.New("refused")}}}).Error(), "http://a: refused") {
		t.Fatal("UnavailableError")
	}
}

func TestNewRejectsNoAddress(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Fatal("no error")
	}
}
