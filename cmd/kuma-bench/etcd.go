package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

// etcdCluster is a local etcd cluster of child processes.
type etcdCluster struct {
	members []*etcdMember
	logf    func(string, ...any)

	watchStopCh chan struct{}
	watchDoneCh chan struct{}
	closeOnce   sync.Once
}

type etcdMember struct {
	name      string
	clientURL string
	proc      *testcluster.Process
}

// startEtcd starts n etcd members on 127.0.0.1 with data under baseDir.
// They are killed when ctx ends; close stops them.
func startEtcd(ctx context.Context, bin, baseDir string, n int, logf func(string, ...any)) (*etcdCluster, error) {
	ports, err := testcluster.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	e := &etcdCluster{logf: logf, watchStopCh: make(chan struct{}), watchDoneCh: make(chan struct{})}
	var initial []string
	peerURL := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]) }
	for i := range n {
		initial = append(initial, fmt.Sprintf("etcd-%d=%s", i+1, peerURL(i)))
	}
	for i := range n {
		name := fmt.Sprintf("etcd-%d", i+1)
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		e.members = append(e.members, &etcdMember{
			name:      name,
			clientURL: client,
			proc: &testcluster.Process{
				Name: name,
				Path: bin,
				Args: []string{
					"--name", name,
					"--data-dir", filepath.Join(baseDir, name),
					"--listen-client-urls", client,
					"--advertise-client-urls", client,
					"--listen-peer-urls", peerURL(i),
					"--initial-advertise-peer-urls", peerURL(i),
					"--initial-cluster", strings.Join(initial, ","),
					"--initial-cluster-state", "new",
					"--initial-cluster-token", "kuma-bench",
				},
				// No ETCD_* variables from the caller's environment leak in.
				Env:     filterEnv(os.Environ(), "ETCD_"),
				LogPath: filepath.Join(baseDir, name+".log"),
			},
		})
	}
	go e.runWatch(ctx)
	for _, m := range e.members {
		if err := m.proc.Start(); err != nil {
			e.close()
			return nil, err
		}
	}
	return e, nil
}

func filterEnv(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

func (e *etcdCluster) runWatch(ctx context.Context) {
	defer close(e.watchDoneCh)
	select {
	case <-ctx.Done():
		for _, m := range e.members {
			_ = m.proc.Kill()
		}
	case <-e.watchStopCh:
	}
}

// waitHealthy polls GET /health on every member until each says healthy.
func (e *etcdCluster) waitHealthy(ctx context.Context) error {
	client := testcluster.NewClient(2 * time.Second)
	defer client.HTTP.CloseIdleConnections()
	for _, m := range e.members {
		last := ""
		for {
			if !m.proc.Running() {
				return fmt.Errorf("%s exited (%v); log tail:\n%s", m.name, m.proc.ExitErr(), m.proc.LogTail(4096))
			}
			status, _, body, err := client.Get(ctx, m.clientURL+"/health")
			if err == nil && status == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				break
			}
			last = fmt.Sprintf("%d %s %v", status, strings.TrimSpace(string(body)), err)
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s healthy: %w (last: %s)", m.name, ctx.Err(), last)
			case <-time.After(testcluster.PollInterval):
			}
		}
	}
	return nil
}

func (e *etcdCluster) dumpLogs() {
	for _, m := range e.members {
		e.logf("===== %s log %s:\n%s", m.name, m.proc.LogPath, m.proc.LogTail(16<<10))
	}
}

// close kills every member: their data is thrown away, and a graceful
// stop of a 3-member cluster takes seconds.
func (e *etcdCluster) close() {
	e.closeOnce.Do(func() {
		for _, m := range e.members {
			_ = m.proc.Kill()
		}
		close(e.watchStopCh)
		<-e.watchDoneCh
	})
}

// etcdTarget writes through etcd's v3 JSON gateway.
type etcdTarget struct {
	urls   []string
	client *http.Client
}

func (t *etcdTarget) Name() string   { return "etcd" }
func (t *etcdTarget) Endpoints() int { return len(t.urls) }

func (t *etcdTarget) Write(ctx context.Context, endpoint int, seq uint64) error {
	name, doc := dataplaneDoc(seq)
	body, err := json.Marshal(map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte("/bench/dataplanes/default/" + name)),
		"value": base64.StdEncoding.EncodeToString(doc),
	})
	if err != nil {
		return err
	}
	return doWrite(ctx, t.client, http.MethodPost, t.urls[endpoint]+"/v3/kv/put", body, http.StatusOK)
}

// doWrite sends one write and reads the whole answer (so the connection is
// reused); any status not in ok is a *statusError.
func doWrite(ctx context.Context, client *http.Client, method, url string, body []byte, ok ...int) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return nil
		}
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return &statusError{Status: resp.StatusCode, Body: msg}
}
