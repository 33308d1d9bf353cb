package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

var concurrencyLevels = []int{1, 16, 64}

// kumaTarget writes Dataplanes through the REST API of every replica.
type kumaTarget struct {
	urls   []string
	client *http.Client
}

func (t *kumaTarget) Name() string   { return "kuma-cp" }
func (t *kumaTarget) Endpoints() int { return len(t.urls) }

func (t *kumaTarget) Write(ctx context.Context, endpoint int, seq uint64) error {
	name, doc := dataplaneDoc(seq)
	return doWrite(ctx, t.client, http.MethodPut, t.urls[endpoint]+"/meshes/default/dataplanes/"+name, doc,
		http.StatusCreated, http.StatusOK)
}

func newBenchClient() *http.Client {
	// One transport, enough keep-alive connections for the highest concurrency.
	return &http.Client{Transport: testcluster.NewTransport(2 * concurrencyLevels[len(concurrencyLevels)-1])}
}

// warmUp sends a few writes through every endpoint so connections exist and
// the first measured write does not pay for a cold start; it fails if none
// succeeds.
func warmUp(ctx context.Context, t target, n int) error {
	var lastErr error
	ok := 0
	for i := range n {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := t.Write(rctx, i%t.Endpoints(), uint64(i))
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		ok++
	}
	if ok == 0 {
		return fmt.Errorf("warm-up: no write of %d succeeded: %w", n, lastErr)
	}
	return nil
}

func benchWrites(ctx context.Context, cfg *config) (string, error) {
	m := probeMachine(ctx, cfg)
	at := time.Now()
	_, doc := dataplaneDoc(0)
	_, docLast := dataplaneDoc(keySpace - 1)
	if len(doc) != len(docLast) {
		return "", fmt.Errorf("document sizes differ: %d vs %d bytes", len(doc), len(docLast))
	}

	// One system at a time, so that they do not compete for the CPUs.
	var kumaRes, etcdRes []*levelResult
	var err error
	if cfg.systems["etcd"] {
		if etcdRes, err = writesEtcd(ctx, cfg); err != nil {
			return "", fmt.Errorf("etcd: %w", err)
		}
	}
	if cfg.systems["kuma-cp"] {
		if kumaRes, err = writesKuma(ctx, cfg); err != nil {
			return "", fmt.Errorf("kuma-cp: %w", err)
		}
	}
	results := append(kumaRes, etcdRes...)
	return writesReport(cfg, m, at, len(doc), results), nil
}

func writesEtcd(ctx context.Context, cfg *config) ([]*levelResult, error) {
	dir, cleanup, err := cfg.tempDir("etcd")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	e, err := startEtcd(ctx, cfg.etcdBin, dir, 3, cfg.logf)
	if err != nil {
		return nil, err
	}
	defer e.close()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := e.waitHealthy(wctx); err != nil {
		dumpUnlessInterrupted(ctx, func(...int) { e.dumpLogs() })
		return nil, err
	}
	t := &etcdTarget{client: newBenchClient()}
	defer t.client.CloseIdleConnections()
	for _, m := range e.members {
		t.urls = append(t.urls, m.clientURL)
	}
	res, err := runLevels(ctx, cfg, t)
	if err != nil {
		dumpUnlessInterrupted(ctx, func(...int) { e.dumpLogs() })
	}
	return res, err
}

func writesKuma(ctx context.Context, cfg *config) ([]*levelResult, error) {
	dir, cleanup, err := cfg.tempDir("kuma")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	c, err := testcluster.Start(ctx, testcluster.Options{
		N: 3, BinDir: cfg.binDir, BaseDir: dir, Logf: cfg.logf, StartTogether: true,
	})
	defer c.Close()
	if err != nil {
		dumpUnlessInterrupted(ctx, c.DumpLogs)
		return nil, err
	}
	if err := waitFormed(ctx, c); err != nil {
		dumpUnlessInterrupted(ctx, c.DumpLogs)
		return nil, err
	}
	t := &kumaTarget{client: newBenchClient()}
	defer t.client.CloseIdleConnections()
	for _, r := range c.Replicas() {
		t.urls = append(t.urls, r.APIURL())
	}
	res, err := runLevels(ctx, cfg, t)
	if err != nil {
		dumpUnlessInterrupted(ctx, c.DumpLogs)
	}
	return res, err
}

// waitFormed waits (60 s at most) until every replica is ready, agrees on a
// leader and sees all replicas healthy.
func waitFormed(ctx context.Context, c *testcluster.Cluster) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		return err
	}
	if _, err := c.WaitLeader(wctx); err != nil {
		return err
	}
	return c.WaitHealthy(wctx)
}

func runLevels(ctx context.Context, cfg *config, t target) ([]*levelResult, error) {
	if err := warmUp(ctx, t, 30); err != nil {
		return nil, err
	}
	var out []*levelResult
	for i, c := range concurrencyLevels {
		res := runLoad(ctx, t, c, cfg.duration, maxOpsPerLevel, uint64(i+1)*1_000_000)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cfg.log.Info("load level done", "system", t.Name(), "concurrency", c,
			"writes_per_s", fmt.Sprintf("%.0f", res.rate()), "p50", percentile(res.Latencies, 50),
			"p99", percentile(res.Latencies, 99), "errors", res.errorCount())
		if res.OK == 0 {
			return nil, fmt.Errorf("%s at concurrency %d: no write succeeded (%s)", t.Name(), c, res.errorSummary())
		}
		out = append(out, res)
	}
	return out, nil
}

func writesReport(cfg *config, m machine, at time.Time, docSize int, results []*levelResult) string {
	var b strings.Builder
	b.WriteString("## " + sectionTitle("writes") + "\n\n")
	b.WriteString(provenance(cfg.cmdline, at, m, cfg.quick))
	fmt.Fprintf(&b, "\nEach level ran for %s. Payload: a %d-byte Dataplane JSON document (the same bytes are the etcd value).\n\n",
		cfg.duration, docSize)
	var rows [][]string
	byKey := map[string]*levelResult{}
	for _, r := range results {
		byKey[fmt.Sprintf("%s/%d", r.System, r.Concurrency)] = r
		errs := fmt.Sprint(r.errorCount())
		if r.errorCount() > 0 {
			errs += " (" + r.errorSummary() + ")"
		}
		rows = append(rows, []string{
			r.System, fmt.Sprint(r.Concurrency), fmt.Sprintf("%.0f", r.rate()),
			fmtDur(percentile(r.Latencies, 50)), fmtDur(percentile(r.Latencies, 99)),
			fmt.Sprint(r.OK), errs,
		})
	}
	b.WriteString(table([]string{"system", "concurrency", "writes/s", "p50", "p99", "writes", "errors"}, rows))
	top := concurrencyLevels[len(concurrencyLevels)-1]
	k, e := byKey[fmt.Sprintf("kuma-cp/%d", top)], byKey[fmt.Sprintf("etcd/%d", top)]
	if k != nil && e != nil && e.rate() > 0 {
		fmt.Fprintf(&b, "\nAt concurrency %d, kuma-cp / etcd throughput = **%.2f** (%.0f / %.0f writes/s); p99 %s vs %s.\n",
			top, k.rate()/e.rate(), k.rate(), e.rate(), fmtDur(percentile(k.Latencies, 99)), fmtDur(percentile(e.Latencies, 99)))
	}
	return b.String()
}

// dumpUnlessInterrupted dumps the processes' logs after a failure, but not
// when the user interrupted the run.
func dumpUnlessInterrupted(ctx context.Context, dump func(...int)) {
	if ctx.Err() == nil {
		dump(16 << 10)
	}
}
