package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// MaxResponseBody bounds how much of a response body the helpers read.
const MaxResponseBody = 64 << 20

// Client is a small HTTP client for the REST API: every call returns the
// status, the headers and the whole body. Non-2xx statuses are not errors;
// err is set only when no response arrived.
type Client struct {
	HTTP *http.Client
}

// NewClient returns a client whose requests time out after timeout (on top
// of the context's deadline), with keep-alive connections to many hosts.
func NewClient(timeout time.Duration) *Client {
	return &Client{HTTP: &http.Client{
		Timeout:   timeout,
		Transport: NewTransport(64),
	}}
}

// NewTransport returns an HTTP transport for talking to local replicas:
// short dial timeout, no proxy, and idlePerHost keep-alive connections per host.
func NewTransport(idlePerHost int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // everything is on 127.0.0.1
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          idlePerHost * 8,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// DefaultClient is used by the package-level helpers: 10 s per request.
var DefaultClient = NewClient(10 * time.Second)

// Do sends one request. A non-nil body is sent as application/json unless
// header sets Content-Type.
func (c *Client) Do(ctx context.Context, method, url string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	if err != nil {
		return resp.StatusCode, resp.Header, data, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// Get sends a GET.
func (c *Client) Get(ctx context.Context, url string) (int, http.Header, []byte, error) {
	return c.Do(ctx, http.MethodGet, url, nil, nil)
}

// Put sends a PUT with a JSON body.
func (c *Client) Put(ctx context.Context, url string, body []byte) (int, http.Header, []byte, error) {
	return c.Do(ctx, http.MethodPut, url, body, nil)
}

// Delete sends a DELETE.
func (c *Client) Delete(ctx context.Context, url string) (int, http.Header, []byte, error) {
	return c.Do(ctx, http.MethodDelete, url, nil, nil)
}

// Get sends a GET with DefaultClient.
func Get(ctx context.Context, url string) (int, http.Header, []byte, error) {
	return DefaultClient.Get(ctx, url)
}

// Put sends a PUT with a JSON body with DefaultClient.
func Put(ctx context.Context, url string, body []byte) (int, http.Header, []byte, error) {
	return DefaultClient.Put(ctx, url, body)
}

// Delete sends a DELETE with DefaultClient.
func Delete(ctx context.Context, url string) (int, http.Header, []byte, error) {
	return DefaultClient.Delete(ctx, url)
}
