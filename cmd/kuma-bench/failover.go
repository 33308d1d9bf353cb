package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
)

const (
	failoverRequestTimeout = time.Second
	failoverWritersPerNode = 2
	maxWritesPerWriter     = 200_000 // per round
	failoverRecoverTimeout = 30 * time.Second
	failoverTail           = time.Second // writes kept going after recovery, to see later gaps
	failoverFailPause      = 5 * time.Millisecond
)

// writeEvent is one write of a failover writer.
type writeEvent struct {
	Start, End time.Time
	OK         bool
}

// roundResult is one leader kill.
type roundResult struct {
	Round       int
	Killed      string
	NewLeader   string
	Unavailable time.Duration // kill -> first success of a write sent after the kill
	MaxGap      time.Duration // longest time between consecutive successes in the round
	Writes      int
	Failed      int
}

// analyzeRound computes unavailability and the largest gap from the events
// of every writer. ok is false if no write sent after the kill succeeded.
func analyzeRound(events []writeEvent, kill time.Time) (unavail, maxGap time.Duration, ok bool) {
	var ends []time.Time
	var first time.Time
	for _, e := range events {
		if !e.OK {
			continue
		}
		ends = append(ends, e.End)
		if !e.Start.Before(kill) && (first.IsZero() || e.End.Before(first)) {
			first = e.End
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ends); i++ {
		maxGap = max(maxGap, ends[i].Sub(ends[i-1]))
	}
	if first.IsZero() {
		return 0, maxGap, false
	}
	return first.Sub(kill), maxGap, true
}

// writerGroup keeps writing through some replicas until stopped.
type writerGroup struct {
	client    *http.Client
	seq       atomic.Uint64
	stopCh    chan struct{}
	wg        sync.WaitGroup
	okCount   atomic.Int64
	killNanos atomic.Int64 // unix nanos of the kill; 0 before
	recovered chan struct{}
	recOnce   sync.Once
	events    [][]writeEvent
}

func startWriters(ctx context.Context, client *http.Client, urls []string, round int) *writerGroup {
	g := &writerGroup{client: client, stopCh: make(chan struct{}), recovered: make(chan struct{})}
	n := len(urls) * failoverWritersPerNode
	g.events = make([][]writeEvent, n)
	for w := range n {
		url := urls[w%len(urls)]
		g.wg.Go(func() { g.runWriter(ctx, w, url, round) })
	}
	return g
}

func (g *writerGroup) runWriter(ctx context.Context, w int, url string, round int) {
	for range maxWritesPerWriter {
		select {
		case <-g.stopCh:
			return
		case <-ctx.Done():
			return
		default:
		}
		name, doc := namedDataplaneDoc(fmt.Sprintf("failover-r%d", round), g.seq.Add(1))
		rctx, cancel := context.WithTimeout(ctx, failoverRequestTimeout)
		start := time.Now()
		err := doWrite(rctx, g.client, http.MethodPut, url+"/meshes/default/dataplanes/"+name, doc, http.StatusCreated, http.StatusOK)
		end := time.Now()
		cancel()
		g.events[w] = append(g.events[w], writeEvent{Start: start, End: end, OK: err == nil})
		if err == nil {
			g.okCount.Add(1)
			if k := g.killNanos.Load(); k != 0 && start.UnixNano() >= k {
				g.recOnce.Do(func() { close(g.recovered) })
			}
			continue
		}
		// Pace failed writes a little so a fast 503 loop does not spin the CPU
		// the replicas need to elect a leader.
		select {
		case <-time.After(failoverFailPause):
		case <-g.stopCh:
			return
		}
	}
}

func (g *writerGroup) stop() []writeEvent {
	close(g.stopCh)
	g.wg.Wait()
	var all []writeEvent
	for _, evs := range g.events {
		all = append(all, evs...)
	}
	return all
}

// waitOK waits until at least n writes succeeded in total.
func (g *writerGroup) waitOK(ctx context.Context, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for g.okCount.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d writes succeeded within %s before the kill", g.okCount.Load(), n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func benchFailover(ctx context.Context, cfg *config) (string, error) {
	m := probeMachine(ctx, cfg)
	at := time.Now()
	dir, cleanup, err := cfg.tempDir("failover")
	if err != nil {
		return "", err
	}
	defer cleanup()
	c, err := testcluster.Start(ctx, testcluster.Options{
		N: 3, BinDir: cfg.binDir, BaseDir: dir, Logf: cfg.logf, StartTogether: true,
	})
	defer c.Close()
	if err != nil {
		dumpUnlessInterrupted(ctx, c.DumpLogs)
		return "", err
	}
	if err := waitFormed(ctx, c); err != nil {
		dumpUnlessInterrupted(ctx, c.DumpLogs)
		return "", err
	}
	client := &http.Client{Transport: testcluster.NewTransport(16)}
	defer client.CloseIdleConnections()

	var rounds []roundResult
	for r := 1; r <= cfg.rounds; r++ {
		res, err := failoverRound(ctx, cfg, c, client, r)
		if err != nil {
			dumpUnlessInterrupted(ctx, c.DumpLogs)
			return "", fmt.Errorf("round %d: %w", r, err)
		}
		cfg.log.Info("failover round done", "round", r, "killed", res.Killed, "new_leader", res.NewLeader,
			"unavailable", res.Unavailable.Round(time.Millisecond), "max_gap", res.MaxGap.Round(time.Millisecond))
		rounds = append(rounds, res)
	}
	return failoverReport(cfg, m, at, rounds), nil
}

func failoverRound(ctx context.Context, cfg *config, c *testcluster.Cluster, client *http.Client, round int) (roundResult, error) {
	res := roundResult{Round: round}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(wctx)
	if err != nil {
		return res, err
	}
	res.Killed = leader.Name
	var urls []string
	for _, f := range c.Followers(leader) {
		urls = append(urls, f.APIURL())
	}
	if len(urls) == 0 {
		return res, fmt.Errorf("no follower of %s is running", leader.Name)
	}
	g := startWriters(ctx, client, urls, round)
	stopped := false
	defer func() {
		if !stopped {
			g.stop()
		}
	}()
	if err := g.waitOK(ctx, 20, 10*time.Second); err != nil {
		return res, err
	}

	kill := time.Now()
	g.killNanos.Store(kill.UnixNano())
	if err := leader.Kill(); err != nil {
		return res, err
	}
	select {
	case <-g.recovered:
	case <-time.After(failoverRecoverTimeout):
		return res, fmt.Errorf("no write succeeded within %s of killing leader %s", failoverRecoverTimeout, leader.Name)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	select {
	case <-time.After(failoverTail): // keep writing: later gaps count too
	case <-ctx.Done():
		return res, ctx.Err()
	}
	events := g.stop()
	stopped = true
	unavail, gap, ok := analyzeRound(events, kill)
	if !ok {
		return res, fmt.Errorf("recovery signalled but no successful write after the kill was recorded")
	}
	res.Unavailable, res.MaxGap = unavail, gap
	for _, e := range events {
		res.Writes++
		if !e.OK {
			res.Failed++
		}
	}
	if l, err := c.WaitLeader(wctx); err == nil {
		res.NewLeader = l.Name
	}

	// Bring the killed replica back and wait for a whole, healthy cluster.
	if err := leader.Restart(wctx); err != nil {
		return res, err
	}
	if err := c.WaitReady(wctx, leader); err != nil {
		return res, err
	}
	if _, err := c.WaitLeader(wctx); err != nil {
		return res, err
	}
	if err := c.WaitHealthy(wctx); err != nil {
		return res, err
	}
	return res, nil
}

func failoverReport(cfg *config, m machine, at time.Time, rounds []roundResult) string {
	var b strings.Builder
	b.WriteString("## " + sectionTitle("failover") + "\n\n")
	b.WriteString(provenance(cfg.cmdline, at, m, cfg.quick))
	var un, gaps []time.Duration
	var rows [][]string
	for _, r := range rounds {
		un = append(un, r.Unavailable)
		gaps = append(gaps, r.MaxGap)
		rows = append(rows, []string{
			fmt.Sprint(r.Round), r.Killed, r.NewLeader, fmtDur(r.Unavailable), fmtDur(r.MaxGap),
			fmt.Sprint(r.Writes), fmt.Sprint(r.Failed),
		})
	}
	fmt.Fprintf(&b, "\n%d rounds, %d writers per follower, %s per-request timeout.\n\n",
		len(rounds), failoverWritersPerNode, failoverRequestTimeout)
	fmt.Fprintf(&b, "**Unavailability after SIGKILL of the leader: median %s, max %s.** Largest gap between successful writes: median %s, max %s.\n\n",
		fmtDur(median(un)), fmtDur(slices.Max(un)), fmtDur(median(gaps)), fmtDur(slices.Max(gaps)))
	b.WriteString(table([]string{"round", "killed", "new leader", "unavailable", "largest gap", "writes", "failed writes"}, rows))
	return b.String()
}
