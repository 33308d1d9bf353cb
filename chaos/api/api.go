// Package api is the chaos harness's client of kuma-cp's REST API, written
// from the external contract (it imports nothing of the control plane):
// health, cluster status, single-resource reads and writes with versions, and
// full listings for comparing replicas.
package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HeaderIndex carries the replica's applied index on every answer.
const HeaderIndex = "X-Kuma-Index"

// Client talks to any replica; every call names the base URL.
type Client struct {
	HTTP *http.Client
}

// NewClient returns a client whose requests time out after timeout. Each
// client has its own connection pool.
func NewClient(timeout time.Duration) *Client {
	return &Client{HTTP: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 15 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		},
	}}
}

// Close drops idle connections.
func (c *Client) Close() { c.HTTP.CloseIdleConnections() }

// Response is one answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Index is the X-Kuma-Index of the answer (0 if absent).
func (r *Response) Index() uint64 {
	v, _ := strconv.ParseUint(r.Header.Get(HeaderIndex), 10, 64)
	return v
}

// ETag is the version in the ETag header (0 if absent).
func (r *Response) ETag() uint64 {
	v, _ := strconv.ParseUint(strings.Trim(r.Header.Get("ETag"), `"`), 10, 64)
	return v
}

// SendError is a request that failed without an answer. Sent reports whether
// the request may have reached the server: a refused or failed dial means it
// certainly did not; anything after that (timeout, reset) means it may have.
type SendError struct {
	Err  error
	Sent bool
}

func (e *SendError) Error() string { return e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// Do sends one request. A non-2xx status is not an error; err (a *SendError)
// is set only when no answer arrived.
func (c *Client) Do(ctx context.Context, method, url string, body []byte, header http.Header) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, &SendError{Err: fmt.Errorf("%s %s: %w", method, url, err)}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, &SendError{Err: fmt.Errorf("%s %s: %w", method, url, err), Sent: !isDialError(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		// The status line arrived: the server got the request.
		return nil, &SendError{Err: fmt.Errorf("%s %s: read body: %w", method, url, err), Sent: true}
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// isDialError reports errors that happen before the request is written.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return false
}

// ReplicaStatus is one entry of GET /cluster.
type ReplicaStatus struct {
	Name         string `json:"name"`
	APIAddress   string `json:"apiAddress"`
	Role         string `json:"role"`
	Suffrage     string `json:"suffrage"`
	LastIndex    uint64 `json:"lastIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
	Healthy      bool   `json:"healthy"`
}

// ClusterStatus is GET /cluster.
type ClusterStatus struct {
	Leader   string          `json:"leader"`
	Replicas []ReplicaStatus `json:"replicas"`
}

// Self returns the entry of the named replica.
func (s *ClusterStatus) Self(name string) (ReplicaStatus, bool) {
	for _, r := range s.Replicas {
		if r.Name == name {
			return r, true
		}
	}
	return ReplicaStatus{}, false
}

// Status fetches GET /cluster.
func (c *Client) Status(ctx context.Context, base string) (*ClusterStatus, error) {
	resp, err := c.Do(ctx, http.MethodGet, base+"/cluster", nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET %s/cluster: status %d: %s", base, resp.Status, firstLine(resp.Body))
	}
	var st ClusterStatus
	if err := json.Unmarshal(resp.Body, &st); err != nil {
		return nil, fmt.Errorf("GET %s/cluster: decode: %w", base, err)
	}
	return &st, nil
}

// Ready asks GET /ready; the string is the reason when not ready.
func (c *Client) Ready(ctx context.Context, base string) (bool, string) {
	resp, err := c.Do(ctx, http.MethodGet, base+"/ready", nil, nil)
	if err != nil {
		return false, err.Error()
	}
	return resp.Status == http.StatusOK, firstLine(resp.Body)
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Error is kuma-cp's error body: Kuma's shape ({"type", "title", "status",
// "detail", ...}) plus, on the 503 of a write, whether the write may have
// been applied or may still be.
type Error struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// MayHaveApplied is nil when the body does not say: a client must then
	// assume the write may have been applied.
	MayHaveApplied *bool `json:"mayHaveApplied,omitempty"`
}

// DecodeError decodes a Kuma error body; ok is false when body is not one
// (no title).
func DecodeError(body []byte) (e Error, ok bool) {
	if json.Unmarshal(body, &e) != nil || e.Title == "" {
		return Error{}, false
	}
	return e, true
}

// CertainlyNotApplied reports whether an answer says in so many words that
// its write did not and will not take effect: a 503 whose body has
// "mayHaveApplied": false. Any other 5xx may have been applied.
func (r *Response) CertainlyNotApplied() bool {
	if r.Status != http.StatusServiceUnavailable {
		return false
	}
	e, ok := DecodeError(r.Body)
	return ok && e.MayHaveApplied != nil && !*e.MayHaveApplied
}

// ErrorTitle extracts the title of a Kuma error body (or its first line).
func ErrorTitle(body []byte) string {
	if e, ok := DecodeError(body); ok {
		if e.Detail != "" {
			return e.Title + ": " + e.Detail
		}
		return e.Title
	}
	return firstLine(body)
}

// typeInfo is one entry of GET /_resources.
type typeInfo struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Scope string `json:"scope"`
}

// list is a page of a listing.
type list struct {
	Total int               `json:"total"`
	Items []json.RawMessage `json:"items"`
	Next  *string           `json:"next"`
}

// State is a replica's full state as its API lists it.
type State struct {
	Index uint64 // X-Kuma-Index of the first and the last listing (equal, or State fails)
	// Resources maps "Type/mesh/name" to a SHA-256 of its canonical JSON.
	Resources map[string]string
	Digest    string // SHA-256 over the sorted Resources
}

// FullState lists every resource of every type (GET /_resources, then
// /meshes, /{plural} and /meshes/{mesh}/{plural} for each mesh) and digests
// them. It fails if the applied index changed while listing, so that the
// listing is a consistent picture.
func (c *Client) FullState(ctx context.Context, base string) (*State, error) {
	resp, err := c.Do(ctx, http.MethodGet, base+"/_resources", nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET %s/_resources: status %d", base, resp.Status)
	}
	startIndex := resp.Index()
	var types struct {
		Resources []typeInfo `json:"resources"`
	}
	if err := json.Unmarshal(resp.Body, &types); err != nil {
		return nil, fmt.Errorf("GET %s/_resources: decode: %w", base, err)
	}
	st := &State{Resources: map[string]string{}}
	meshItems, _, err := c.listAll(ctx, base+"/meshes")
	if err != nil {
		return nil, err
	}
	var meshes []string
	for _, it := range meshItems {
		var m struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(it, &m); err != nil {
			return nil, fmt.Errorf("GET %s/meshes: decode: %w", base, err)
		}
		meshes = append(meshes, m.Name)
	}
	lastIndex := startIndex
	for _, t := range types.Resources {
		var urls []string
		if t.Scope == "Mesh" {
			for _, m := range meshes {
				urls = append(urls, base+"/meshes/"+m+"/"+t.Path)
			}
		} else {
			urls = append(urls, base+"/"+t.Path)
		}
		for _, u := range urls {
			items, idx, err := c.listAll(ctx, u)
			if err != nil {
				return nil, err
			}
			lastIndex = idx
			for _, it := range items {
				key, sum, err := canonical(it)
				if err != nil {
					return nil, fmt.Errorf("GET %s: %w", u, err)
				}
				st.Resources[key] = sum
			}
		}
	}
	if lastIndex != startIndex {
		return nil, fmt.Errorf("%s: applied index moved from %d to %d while listing", base, startIndex, lastIndex)
	}
	st.Index = startIndex
	keys := make([]string, 0, len(st.Resources))
	for k := range st.Resources {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, st.Resources[k])
	}
	st.Digest = hex.EncodeToString(h.Sum(nil))
	return st, nil
}

// listAll follows a listing's pages; it returns the items and the
// X-Kuma-Index of the last page.
func (c *Client) listAll(ctx context.Context, url string) ([]json.RawMessage, uint64, error) {
	var out []json.RawMessage
	var idx uint64
	next := url + "?size=1000"
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			return nil, 0, fmt.Errorf("GET %s: too many pages", url)
		}
		resp, err := c.Do(ctx, http.MethodGet, next, nil, nil)
		if err != nil {
			return nil, 0, err
		}
		if resp.Status != http.StatusOK {
			return nil, 0, fmt.Errorf("GET %s: status %d: %s", next, resp.Status, ErrorTitle(resp.Body))
		}
		idx = resp.Index()
		var l list
		if err := json.Unmarshal(resp.Body, &l); err != nil {
			return nil, 0, fmt.Errorf("GET %s: decode: %w", next, err)
		}
		out = append(out, l.Items...)
		next = ""
		if l.Next != nil && *l.Next != "" {
			next = *l.Next
			if strings.HasPrefix(next, "/") {
				next = url[:strings.Index(url, "://")+3] + hostOf(url) + next
			}
		}
	}
	return out, idx, nil
}

func hostOf(url string) string {
	rest := url[strings.Index(url, "://")+3:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i]
	}
	return rest
}

// canonical returns a resource's key and a digest of its canonical JSON
// (encoding/json sorts map keys).
func canonical(item json.RawMessage) (string, string, error) {
	var m map[string]any
	if err := json.Unmarshal(item, &m); err != nil {
		return "", "", fmt.Errorf("decode item: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(b)
	str := func(k string) string { v, _ := m[k].(string); return v }
	key := str("type") + "/" + str("mesh") + "/" + str("name")
	return key, hex.EncodeToString(sum[:8]), nil
}
