package nemesis

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/backend"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

func TestParseKinds(t *testing.T) {
	got, err := ParseKinds("kill, pause,process")
	if err != nil {
		t.Fatal(err)
	}
	want := []Kind{Kill, KillLeader, Pause, PauseLeader, Restart, RollingRestart}
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ParseKinds("kill,explode"); err == nil || !strings.Contains(err.Error(), `"explode"`) {
		t.Errorf("unknown nemesis: err = %v", err)
	}
	if _, err := ParseKinds(" , "); err == nil {
		t.Error("empty list accepted")
	}
	all, err := ParseKinds("all")
	if err != nil || len(all) != len(All) {
		t.Errorf("all = %v, %v", all, err)
	}
}

func TestPlanIsRepeatable(t *testing.T) {
	kinds := []Kind{Kill, Pause, SlowNetwork, PartitionHalves}
	a := Plan(42, kinds, 5*time.Minute, DefaultTiming)
	b := Plan(42, kinds, 5*time.Minute, DefaultTiming)
	c := Plan(43, kinds, 5*time.Minute, DefaultTiming)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different plans")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same plan")
	}
	var total time.Duration
	seen := map[Kind]bool{}
	for _, s := range a {
		total += s.Gap + s.Hold
		seen[s.Kind] = true
		if s.Hold < DefaultTiming.MinHold || s.Hold > DefaultTiming.MaxHold || s.Gap < DefaultTiming.MinGap || s.Gap > DefaultTiming.MaxGap {
			t.Errorf("step out of bounds: %+v", s)
		}
		if s.Kind == SlowNetwork && s.Netem.IsZero() {
			t.Errorf("slow network step without settings: %+v", s)
		}
	}
	if total < 5*time.Minute {
		t.Errorf("plan covers %s, want at least 5m", total)
	}
	if len(seen) != len(kinds) {
		t.Errorf("plan of 5 minutes uses only %v", seen)
	}
}

// fakeBackend records what the nemesis does.
type fakeBackend struct {
	mu      sync.Mutex
	names   []string
	down    map[string]bool
	paused  map[string]bool
	cut     []backend.Pair
	netem   map[string]backend.Netem
	actions []string
}

func newFake(n int) *fakeBackend {
	f := &fakeBackend{down: map[string]bool{}, paused: map[string]bool{}, netem: map[string]backend.Netem{}}
	for i := range n {
		f.names = append(f.names, fmt.Sprintf("cp-%d", i+1))
	}
	return f
}

func (f *fakeBackend) act(format string, args ...any) {
	f.actions = append(f.actions, fmt.Sprintf(format, args...))
}

func (f *fakeBackend) Name() string                          { return "fake" }
func (f *fakeBackend) Start(context.Context) error           { return nil }
func (f *fakeBackend) Unavailable() map[backend.Fault]string { return nil }
func (f *fakeBackend) Nodes() []backend.Node {
	var out []backend.Node
	for _, n := range f.names {
		out = append(out, backend.Node{Name: n})
	}
	return out
}
func (f *fakeBackend) Kill(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[n] = true
	f.act("kill %s", n)
	return nil
}
func (f *fakeBackend) Stop(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[n] = true
	f.act("stop %s", n)
	return nil
}
func (f *fakeBackend) StartNode(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[n] = false
	f.act("start %s", n)
	return nil
}
func (f *fakeBackend) Pause(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused[n] = true
	f.act("pause %s", n)
	return nil
}
func (f *fakeBackend) Resume(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused[n] = false
	f.act("resume %s", n)
	return nil
}
func (f *fakeBackend) Running(n string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.down[n]
}
func (f *fakeBackend) Paused(n string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused[n]
}
func (f *fakeBackend) Incarnation(string) int { return 1 }
func (f *fakeBackend) SetPartition(_ context.Context, cut []backend.Pair) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = cut
	f.act("partition %v", cut)
	return nil
}
func (f *fakeBackend) SetNetem(_ context.Context, n string, nm backend.Netem) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.netem[n] = nm
	f.act("netem %s %s", n, nm)
	return nm.String(), nil
}
func (f *fakeBackend) CollectLogs(context.Context, string) error { return nil }
func (f *fakeBackend) Close() error                              { return nil }

type fakeCluster struct{ leader string }

func (c fakeCluster) Leader(context.Context) (string, error) {
	if c.leader == "" {
		return "", errors.New("no leader")
	}
	return c.leader, nil
}
func (c fakeCluster) WaitHealthy(context.Context) error { return nil }

func TestExecutorInjectsAndHeals(t *testing.T) {
	b := newFake(3)
	rec := history.NewRecorder()
	e := &Executor{Backend: b, Cluster: fakeCluster{leader: "cp-2"}, Recorder: rec}
	steps := []Step{
		{Kind: KillLeader, Gap: time.Millisecond, Hold: time.Millisecond},
		{Kind: PauseLeader, Gap: time.Millisecond, Hold: time.Millisecond},
		{Kind: PartitionLeader, Gap: time.Millisecond, Hold: time.Millisecond},
		{Kind: RollingRestart, Gap: time.Millisecond, Hold: time.Millisecond},
		{Kind: SlowNetwork, Gap: time.Millisecond, Hold: time.Millisecond, Pick: 1, Netem: backend.Netem{Loss: 5}},
	}
	if err := e.Run(context.Background(), steps, time.Minute); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kill cp-2", "start cp-2",
		"pause cp-2", "resume cp-2",
		"partition [[cp-2 cp-1] [cp-2 cp-3]]", "partition []",
		"stop cp-1", "start cp-1", "stop cp-3", "start cp-3", "stop cp-2", "start cp-2",
		"netem cp-1 loss 5.0%", "netem cp-2 loss 5.0%", "netem cp-3 loss 5.0%",
		"netem cp-1 none", "netem cp-2 none", "netem cp-3 none",
	}
	if !reflect.DeepEqual(b.actions, want) {
		t.Errorf("actions:\n got %q\nwant %q", b.actions, want)
	}
	h := rec.Snapshot()
	if len(h.Faults) != len(steps) {
		t.Fatalf("%d fault windows, want %d", len(h.Faults), len(steps))
	}
	for i, f := range h.Faults {
		if f.Nemesis != string(steps[i].Kind) || f.End < f.Start || f.Error != "" || len(f.Targets) == 0 {
			t.Errorf("window %d: %+v", i, f)
		}
	}
	if h.Faults[0].Targets[0] != "cp-2" || h.Faults[0].Detail != "leader" {
		t.Errorf("kill-leader window: %+v", h.Faults[0])
	}
}

func TestPartitions(t *testing.T) {
	cross := func(cut []backend.Pair) map[string][]string {
		out := map[string][]string{}
		for _, p := range cut {
			out[p[0]] = append(out[p[0]], p[1])
			out[p[1]] = append(out[p[1]], p[0])
		}
		return out
	}
	for _, n := range []int{3, 5} {
		b := newFake(n)
		e := &Executor{Backend: b, Cluster: fakeCluster{}, Recorder: history.NewRecorder()}
		for pick := range uint64(20) {
			s := Step{Kind: PartitionHalves, Pick: pick}
			cut, _, err := e.partition(context.Background(), s, newRand(pick))
			if err != nil {
				t.Fatal(err)
			}
			// Minority of (n-1)/2 replicas, each cut from all n-(n-1)/2 others.
			minority := (n - 1) / 2
			if len(cut) != minority*(n-minority) {
				t.Errorf("n=%d halves: %d cut links: %v", n, len(cut), cut)
			}
			s.Kind = PartitionBridge
			cut, desc, err := e.partition(context.Background(), s, newRand(pick))
			if err != nil {
				t.Fatal(err)
			}
			links := cross(cut)
			if len(links) != n-1 {
				t.Errorf("n=%d bridge %s: %d replicas cut, want all but the bridge", n, desc, len(links))
			}
		}
		// With no leader known, partition-leader isolates some replica.
		cut, desc, err := e.partition(context.Background(), Step{Kind: PartitionLeader}, newRand(1))
		if err != nil || len(cut) != n-1 || !strings.Contains(desc, "no leader") {
			t.Errorf("n=%d leader partition without a leader: %v %q %v", n, cut, desc, err)
		}
	}
}

func TestHealAll(t *testing.T) {
	b := newFake(3)
	b.down["cp-1"] = true
	b.paused["cp-2"] = true
	if err := HealAll(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.down["cp-1"] || b.paused["cp-2"] || len(b.cut) != 0 {
		t.Errorf("not healed: %+v", b)
	}
}

func TestRunStopsAtDeadline(t *testing.T) {
	b := newFake(3)
	e := &Executor{Backend: b, Cluster: fakeCluster{leader: "cp-1"}, Recorder: history.NewRecorder()}
	steps := []Step{{Kind: Pause, Gap: time.Millisecond, Hold: time.Hour}}
	start := time.Now()
	if err := e.Run(context.Background(), steps, time.Second); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second || len(b.actions) != 0 {
		t.Errorf("a step longer than the duration was started: %v", b.actions)
	}
	ctx, cancel := context.WithCancel(context.Background())
	steps = []Step{{Kind: Pause, Gap: time.Millisecond, Hold: 50 * time.Millisecond}}
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if err := e.Run(ctx, steps, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if b.Paused("cp-1") && b.Paused("cp-2") && b.Paused("cp-3") {
		t.Error("interrupted pause was not healed")
	}
	for _, n := range b.names {
		if b.Paused(n) {
			t.Errorf("%s still paused after an interrupted step", n)
		}
	}
}

// movingCluster is a cluster whose leader moves when the backend restarts
// a replica: moves maps the replica just started to the new leader.
type movingCluster struct {
	b      *fakeBackend
	leader string
	moves  map[string]string
}

func (c *movingCluster) Leader(context.Context) (string, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.leader == "" {
		return "", errors.New("no leader")
	}
	return c.leader, nil
}

func (c *movingCluster) WaitHealthy(context.Context) error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	last := c.b.actions[len(c.b.actions)-1]
	if to, ok := c.moves[strings.TrimPrefix(last, "start ")]; ok {
		c.leader = to
	}
	c.b.act("healthy")
	return nil
}

func TestRollingRestartLeaderLast(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leader string
		moves  map[string]string
		want   []string
		detail string
	}{
		{
			name: "leader stays", leader: "cp-1",
			want:   []string{"cp-2", "cp-3", "cp-1"},
			detail: "cp-2 (follower), cp-3 (follower), cp-1 (leader)",
		},
		{
			// Restarting cp-1 moves leadership from cp-2 to cp-3: cp-2 is
			// now a follower and goes next, the new leader last.
			name: "leadership moves", leader: "cp-2", moves: map[string]string{"cp-1": "cp-3"},
			want:   []string{"cp-1", "cp-2", "cp-3"},
			detail: "cp-1 (follower), cp-2 (follower), cp-3 (leader)",
		},
		{
			name: "no leader known", leader: "",
			want:   []string{"cp-1", "cp-2", "cp-3"},
			detail: "cp-1 (no leader known), cp-2 (no leader known), cp-3 (no leader known)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFake(3)
			rec := history.NewRecorder()
			e := &Executor{Backend: b, Cluster: &movingCluster{b: b, leader: tc.leader, moves: tc.moves}, Recorder: rec}
			if err := e.Run(context.Background(), []Step{{Kind: RollingRestart, Gap: time.Millisecond, Hold: time.Millisecond}}, time.Minute); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, n := range tc.want {
				want = append(want, "stop "+n, "start "+n, "healthy")
			}
			if !reflect.DeepEqual(b.actions, want) {
				t.Errorf("actions:\n got %q\nwant %q", b.actions, want)
			}
			f := rec.Snapshot().Faults
			if len(f) != 1 || !reflect.DeepEqual(f[0].Targets, tc.want) || f[0].Detail != tc.detail || f[0].Error != "" {
				t.Errorf("window: %+v", f)
			}
		})
	}
}

// stopFails is a backend whose graceful stop of one replica times out
// (the process backend then kills it).
type stopFails struct {
	*fakeBackend
	name string
}

func (s stopFails) Stop(ctx context.Context, n string) error {
	if err := s.fakeBackend.Stop(ctx, n); err != nil {
		return err
	}
	if n == s.name {
		return errors.New("still running 10s after SIGTERM, killed")
	}
	return nil
}

func TestRestartRecordsFailedGracefulStop(t *testing.T) {
	b := newFake(3)
	rec := history.NewRecorder()
	e := &Executor{Backend: stopFails{b, "cp-2"}, Cluster: fakeCluster{leader: "cp-1"}, Recorder: rec}
	if err := e.Run(context.Background(), []Step{{Kind: RollingRestart, Gap: time.Millisecond, Hold: time.Millisecond}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	// cp-2 is started again, and the round stops there: the fault says why.
	want := []string{"stop cp-2", "start cp-2"}
	if !reflect.DeepEqual(b.actions, want) {
		t.Errorf("actions: got %q, want %q", b.actions, want)
	}
	f := rec.Snapshot().Faults
	if len(f) != 1 || !strings.Contains(f[0].Error, "graceful stop of cp-2") || !strings.Contains(f[0].Error, "killed") {
		t.Errorf("window: %+v", f)
	}
}
