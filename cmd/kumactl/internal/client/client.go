// Package client is kumactl's HTTP client for the control plane's REST API.
// It knows every replica's address and fails over between them: a request
// goes to the replica that answered last, and moves to the next one only when
// a replica cannot answer (connection refused, timeout, 503 not ready). Any
// other answer, success or error, is the cluster's answer and is returned as
// is. It holds no background goroutines.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultConnectTimeout = 2 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	maxBodyBytes          = 64 << 20
)

// Options configures a Client.
type Options struct {
	// ConnectTimeout bounds establishing a TCP connection to one replica.
	ConnectTimeout time.Duration
	// RequestTimeout bounds one attempt against one replica, body included.
	RequestTimeout time.Duration
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Client sends requests to one control plane cluster.
type Client struct {
	addrs   []string
	http    *http.Client
	timeout time.Duration
	log     *slog.Logger

	mu struct {
		sync.Mutex
		preferred int // index into addrs of the replica that answered last
	}
}

// New builds a client for the given API addresses (http[s]://host:port).
func New(addrs []string, opts Options) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no control plane address")
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	rt := opts.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
		t.TLSHandshakeTimeout = opts.ConnectTimeout * 2
		t.Proxy = nil
		rt = t
	}
	clean := make([]string, len(addrs))
	for i, a := range addrs {
		clean[i] = strings.TrimRight(a, "/")
	}
	return &Client{
		addrs:   clean,
		http:    &http.Client{Transport: rt},
		timeout: opts.RequestTimeout,
		log:     opts.Logger.With("component", "kumactl-client"),
	}, nil
}

// Addresses returns the configured addresses in order.
func (c *Client) Addresses() []string { return append([]string(nil), c.addrs...) }

// Response is a complete answer from one replica.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	// Address is the replica that gave the answer.
	Address string
}

// UnavailableError says no replica could answer; Attempts holds each
// replica's failure in the order they were tried.
type UnavailableError struct {
	Attempts []AttemptError
}

// AttemptError is the failure of one attempt against one replica.
type AttemptError struct {
	Address string
	Err     error
}

func (e *UnavailableError) Error() string {
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		parts[i] = a.Address + ": " + a.Err.Error()
	}
	return "could not reach the control plane (" + strings.Join(parts, "; ") + ")"
}

// Unwrap exposes the last attempt's error.
func (e *UnavailableError) Unwrap() error {
	if len(e.Attempts) == 0 {
		return nil
	}
	return e.Attempts[len(e.Attempts)-1].Err
}

// Do sends one request, failing over between replicas. body may be nil.
// A non-2xx answer is not an error here: callers decide (see APIErrorFrom).
// If every replica returned 503, the last 503 response is returned.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, contentType string) (*Response, error) {
	c.mu.Lock()
	start := c.mu.preferred
	c.mu.Unlock()

	var attempts []AttemptError
	var last503 *Response
	for i := range c.addrs {
		idx := (start + i) % len(c.addrs)
		addr := c.addrs[idx]
		resp, err := c.attempt(ctx, addr, method, path, body, contentType)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			c.log.Debug("replica did not answer, trying the next one", "address", addr, "error", err)
			attempts = append(attempts, AttemptError{Address: addr, Err: err})
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			c.log.Debug("replica unavailable, trying the next one", "address", addr, "status", resp.StatusCode)
			attempts = append(attempts, AttemptError{Address: addr, Err: APIErrorFrom(resp)})
			last503 = resp
			continue
		}
		c.mu.Lock()
		c.mu.preferred = idx
		c.mu.Unlock()
		return resp, nil
	}
	if last503 != nil {
		return last503, nil
	}
	return nil, &UnavailableError{Attempts: attempts}
}

func (c *Client) attempt(ctx context.Context, addr, method, path string, body []byte, contentType string) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, addr+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kumactl")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: data, Address: addr}, nil
}

// APIError is an error answer in Kuma's shape.
type APIError struct {
	StatusCode        int                `json:"status"`
	Type              string             `json:"type"`
	Title             string             `json:"title"`
	Detail            string             `json:"detail"`
	InvalidParameters []InvalidParameter `json:"invalid_parameters,omitempty"`
	// Deprecated fields older servers send.
	Details string  `json:"details,omitempty"`
	Causes  []Cause `json:"causes,omitempty"`
}

// InvalidParameter names one invalid field.
type InvalidParameter struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Cause is the deprecated form of InvalidParameter.
type Cause struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error renders the title and detail on the first line and each invalid
// field on its own line, as "* field: reason".
func (e *APIError) Error() string {
	var b strings.Builder
	title := e.Title
	if title == "" {
		title = http.StatusText(e.StatusCode)
	}
	if title == "" {
		title = fmt.Sprintf("status %d", e.StatusCode)
	}
	b.WriteString(title)
	detail := e.Detail
	if detail == "" {
		detail = e.Details
	}
	if detail != "" && detail != title {
		b.WriteString(" (" + detail + ")")
	}
	params := e.InvalidParameters
	if len(params) == 0 {
		for _, c := range e.Causes {
			params = append(params, InvalidParameter{Field: c.Field, Reason: c.Message})
		}
	}
	for _, p := range params {
		b.WriteString("\n* ")
		if p.Field != "" {
			b.WriteString(p.Field + ": ")
		}
		b.WriteString(p.Reason)
	}
	return b.String()
}

// APIErrorFrom decodes a non-2xx response into an *APIError. A body that is
// not Kuma's error shape becomes the detail.
func APIErrorFrom(r *Response) *APIError {
	e := &APIError{}
	if err := json.Unmarshal(r.Body, e); err != nil || (e.Title == "" && e.Detail == "" && e.Details == "") {
		e = &APIError{Detail: strings.TrimSpace(string(r.Body))}
		if len(e.Detail) > 512 {
			e.Detail = e.Detail[:512] + "..."
		}
	}
	e.StatusCode = r.StatusCode
	return e
}

// IsNotFound reports whether err is an API 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// GetJSON sends a GET and decodes a 2xx JSON answer into out (if non-nil),
// returning the raw body too. A non-2xx answer is an *APIError.
func (c *Client) GetJSON(ctx context.Context, path string, out any) ([]byte, error) {
	resp, err := c.Do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, APIErrorFrom(resp)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return nil, fmt.Errorf("decode answer of GET %s from %s: %w", path, resp.Address, err)
		}
	}
	return resp.Body, nil
}
