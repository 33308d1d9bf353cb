package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeLists serves /_resources and listings of two meshes, one global type
// and one mesh-scoped type, with the given label on mesh b.
func fakeLists(label string, index *atomic.Uint64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderIndex, fmt.Sprint(index.Load()))
		switch r.URL.Path {
		case "/_resources":
			fmt.Fprint(w, `{"resources":[{"name":"Mesh","path":"meshes","scope":"Global"},{"name":"MeshTimeout","path":"meshtimeouts","scope":"Mesh"}]}`)
		case "/meshes":
			if r.URL.Query().Get("offset") == "" {
				fmt.Fprintf(w, `{"total":2,"items":[{"type":"Mesh","name":"a"}],"next":"/meshes?size=1000&offset=1"}`)
				return
			}
			fmt.Fprintf(w, `{"total":2,"items":[{"type":"Mesh","name":"b","labels":{"v":%q}}],"next":null}`, label)
		case "/meshes/a/meshtimeouts":
			fmt.Fprint(w, `{"total":1,"items":[{"type":"MeshTimeout","mesh":"a","name":"t1","spec":{"x":1}}],"next":null}`)
		case "/meshes/b/meshtimeouts":
			fmt.Fprint(w, `{"total":0,"items":[],"next":null}`)
		default:
			http.NotFound(w, r)
		}
	})
}

func TestFullState(t *testing.T) {
	var idx atomic.Uint64
	idx.Store(7)
	a := httptest.NewServer(fakeLists("1", &idx))
	defer a.Close()
	b := httptest.NewServer(fakeLists("1", &idx))
	defer b.Close()
	c := httptest.NewServer(fakeLists("2", &idx))
	defer c.Close()
	cl := NewClient(5 * time.Second)
	ctx := context.Background()
	sa, err := cl.FullState(ctx, a.URL)
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := cl.FullState(ctx, b.URL)
	sc, _ := cl.FullState(ctx, c.URL)
	if sa.Index != 7 || len(sa.Resources) != 3 {
		t.Fatalf("state = %+v", sa)
	}
	if _, ok := sa.Resources["MeshTimeout/a/t1"]; !ok {
		t.Errorf("keys: %v", sa.Resources)
	}
	if sa.Digest != sb.Digest || sa.Digest == sc.Digest {
		t.Errorf("digests: equal states %s %s, different state %s", sa.Digest, sb.Digest, sc.Digest)
	}
	if sa.Resources["Mesh//b"] == sc.Resources["Mesh//b"] || sa.Resources["Mesh//a"] != sc.Resources["Mesh//a"] {
		t.Error("per-resource digests do not point at the difference")
	}
}

func TestSendErrorSent(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	_, err := NewClient(time.Second).Do(context.Background(), http.MethodGet, url, nil, nil)
	se, ok := err.(*SendError)
	if !ok || se.Sent {
		t.Fatalf("refused connection: %#v", err)
	}
	hang := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { time.Sleep(time.Second) }))
	defer hang.Close()
	_, err = NewClient(100*time.Millisecond).Do(context.Background(), http.MethodPut, hang.URL, []byte("{}"), nil)
	se, ok = err.(*SendError)
	if !ok || !se.Sent {
		t.Fatalf("timeout: %#v", err)
	}
}

func TestErrorTitle(t *testing.T) {
	if got := ErrorTitle([]byte(`{"title":"No quorum","detail":"no leader"}`)); got != "No quorum: no leader" {
		t.Errorf("got %q", got)
	}
	if got := ErrorTitle([]byte("plain\nsecond")); got != "plain" {
		t.Errorf("got %q", got)
	}
	if got := ErrorTitle([]byte(strings.Repeat("x", 500))); len(got) > 210 {
		t.Errorf("not truncated: %d", len(got))
	}
}
