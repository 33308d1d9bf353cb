package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

// errUnavailable marks a write that may succeed if tried again: the
// cluster had no quorum (503) or the replica did not answer.
var errUnavailable = errors.New("unavailable")

// replicaInfo is one replica as GET /cluster describes it.
type replicaInfo struct {
	Name    string
	APIURL  string
	XDSAddr string
}

// httpTarget drives a cluster through its REST API.
type httpTarget struct {
	apiURLs  []string // writes go round robin over these
	replicas []replicaInfo
	client   *testcluster.Client
}

// newHTTPTarget asks the cluster for its replicas (GET /cluster on the first
// API URL that answers).
func newHTTPTarget(ctx context.Context, apiURLs []string) (*httpTarget, error) {
	t := &httpTarget{apiURLs: apiURLs, client: testcluster.NewClient(30 * time.Second)}
	t.client.HTTP.Transport = testcluster.NewTransport(64)
	var errs []error
	for _, u := range apiURLs {
		status, _, body, err := t.client.Get(ctx, u+"/cluster")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("GET %s/cluster: status %d: %s", u, status, strings.TrimSpace(string(body)))
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var cs testcluster.ClusterStatus
		if err := json.Unmarshal(body, &cs); err != nil {
			errs = append(errs, fmt.Errorf("GET %s/cluster: %w", u, err))
			continue
		}
		for _, r := range cs.Replicas {
			if r.XDSAddress == "" || r.APIAddress == "" {
				continue
			}
			t.replicas = append(t.replicas, replicaInfo{Name: r.Name, APIURL: "http://" + r.APIAddress, XDSAddr: r.XDSAddress})
		}
		if len(t.replicas) == 0 {
			errs = append(errs, fmt.Errorf("GET %s/cluster: no replica has an xdsAddress and an apiAddress", u))
			continue
		}
		return t, nil
	}
	return nil, fmt.Errorf("--api: %w", errors.Join(errs...))
}

func (t *httpTarget) XDSAddrs() []string {
	var out []string
	for _, r := range t.replicas {
		out = append(out, r.XDSAddr)
	}
	return out
}

func (t *httpTarget) Put(ctx context.Context, i int, name string, doc []byte) error {
	url := t.apiURLs[i%len(t.apiURLs)] + "/meshes/default/dataplanes/" + name
	status, _, body, err := t.client.Put(ctx, url, doc)
	return writeErr(ctx, "PUT", url, status, body, err, http.StatusOK, http.StatusCreated)
}

func (t *httpTarget) Delete(ctx context.Context, i int, name string) error {
	url := t.apiURLs[i%len(t.apiURLs)] + "/meshes/default/dataplanes/" + name
	status, _, body, err := t.client.Delete(ctx, url)
	return writeErr(ctx, "DELETE", url, status, body, err, http.StatusOK, http.StatusNotFound)
}

// writeErr turns a write's outcome into nil, an error wrapping
// errUnavailable (worth retrying), or a final error.
func writeErr(ctx context.Context, method, url string, status int, body []byte, err error, ok ...int) error {
	switch {
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("%w: %v", errUnavailable, err)
	case err != nil:
		return err
	case status == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s %s: status %d: %s", errUnavailable, method, url, status, strings.TrimSpace(string(body)))
	}
	for _, s := range ok {
		if status == s {
			return nil
		}
	}
	return fmt.Errorf("%s %s: status %d: %s", method, url, status, strings.TrimSpace(string(body)))
}

func (t *httpTarget) Usage(ctx context.Context) ([]usage, error) {
	var out []usage
	for _, r := range t.replicas {
		m, err := t.scrape(ctx, r.APIURL)
		if err != nil {
			return nil, err
		}
		out = append(out, usage{Name: r.Name, RSSBytes: m["process_resident_memory_bytes"],
			CPUSeconds: m["process_cpu_seconds_total"], Proxies: m["kuma_xds_proxies"]})
	}
	return out, nil
}

// scrape reads the unlabelled samples of a replica's /metrics.
func (t *httpTarget) scrape(ctx context.Context, apiURL string) (map[string]float64, error) {
	status, _, body, err := t.client.Get(ctx, apiURL+"/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: status %d", apiURL, status)
	}
	return parseMetrics(body), nil
}

// parseMetrics returns the unlabelled samples of a Prometheus text page.
func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		if f, err := strconv.ParseFloat(fields[1], 64); err == nil {
			out[fields[0]] = f
		}
	}
	return out
}

// selfPeakRSS is this process's peak resident set (VmHWM), in bytes.
func selfPeakRSS() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// selfCPU is the CPU time (user and system) this process has used, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
