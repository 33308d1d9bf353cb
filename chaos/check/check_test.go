package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// h builds histories tersely. Times are in milliseconds.
type h struct {
	ops []history.Op
}

func (b *h) add(op history.Op, invoke, complete int64) *h {
	op.ID = int64(len(b.ops) + 1)
	op.Invoke, op.Complete = invoke*1e6, complete*1e6
	if op.Key == "" {
		op.Key = "k"
	}
	if op.Outcome == "" {
		op.Outcome = history.OK
	}
	if op.Replica == "" {
		op.Replica = "cp-1"
	}
	b.ops = append(b.ops, op)
	return b
}

func (b *h) write(value string, version uint64, created bool, t0, t1 int64) *h {
	status := 200
	if created {
		status = 201
	}
	return b.add(history.Op{Kind: history.Write, Value: value, Version: version, Status: status, Created: created}, t0, t1)
}

func (b *h) read(value string, version uint64, t0, t1 int64) *h {
	return b.add(history.Op{Kind: history.Read, Value: value, Version: version, Found: value != "", Consistent: true, Status: 200}, t0, t1)
}

func (b *h) final(value string, version uint64, replica string, t0 int64) *h {
	return b.add(history.Op{Kind: history.Read, Value: value, Version: version, Found: value != "", Consistent: true, Final: true, Replica: replica, Status: 200}, t0, t0+1)
}

func TestLinearizable(t *testing.T) {
	tests := []struct {
		name string
		b    *h
		want Result
	}{
		{"sequential write read cas delete", (&h{}).
			write("a", 5, true, 0, 10).
			read("a", 5, 11, 12).
			add(history.Op{Kind: history.CAS, IfVersion: 5, Value: "b", Version: 8, Status: 200}, 13, 20).
			read("b", 8, 21, 22).
			add(history.Op{Kind: history.Delete, Status: 200}, 23, 30).
			read("", 0, 31, 32).
			add(history.Op{Kind: history.Delete, Outcome: history.Fail, Status: 404}, 33, 34), Pass},
		{"concurrent read may see either value", (&h{}).
			write("a", 5, true, 0, 10).
			write("b", 7, false, 20, 40).
			read("a", 5, 21, 22).
			read("b", 7, 23, 24), Pass},
		{"stale consistent read", (&h{}).
			write("a", 5, true, 0, 10).
			write("b", 7, false, 20, 30).
			read("a", 5, 40, 41), Fail},
		{"read goes back in time", (&h{}).
			write("a", 5, true, 0, 10).
			write("b", 7, false, 20, 60).
			read("b", 7, 30, 31).
			read("a", 5, 40, 41), Fail},
		{"unknown write observed later", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Write, Value: "b", Outcome: history.Unknown}, 20, 25).
			read("b", 9, 100, 101), Pass},
		{"unknown write never observed", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Write, Value: "b", Outcome: history.Unknown}, 20, 25).
			read("a", 5, 100, 101), Pass},
		{"412 explained by an unknown write", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Write, Value: "b", Outcome: history.Unknown}, 20, 25).
			add(history.Op{Kind: history.CAS, IfVersion: 5, Value: "c", Outcome: history.Fail, Status: 412}, 30, 31), Pass},
		{"412 unexplained", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.CAS, IfVersion: 5, Value: "c", Outcome: history.Fail, Status: 412}, 30, 31), Fail},
		{"cas succeeds on a stale version", (&h{}).
			write("a", 5, true, 0, 10).
			write("b", 7, false, 20, 30).
			add(history.Op{Kind: history.CAS, IfVersion: 5, Value: "c", Version: 9, Status: 200}, 40, 50), Fail},
		{"created twice", (&h{}).
			write("a", 5, true, 0, 10).
			write("b", 7, true, 20, 30), Fail},
		{"delete 404 while it exists", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Delete, Outcome: history.Fail, Status: 404}, 20, 21), Fail},
		{"unknown conditional delete", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Delete, IfVersion: 5, Outcome: history.Unknown}, 20, 21).
			read("", 0, 30, 31), Pass},
		// The forwarding bug of issue 10: a command proposed twice, its
		// first proposal applied and the answer that of the second.
		{"cas applied but answered 412", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.CAS, IfVersion: 5, Value: "b", Outcome: history.Fail, Status: 412}, 20, 30).
			read("b", 7, 40, 41), Fail},
		{"delete applied but answered 404", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Delete, IfVersion: 5, Outcome: history.Fail, Status: 404}, 20, 30).
			read("", 0, 40, 41), Fail},
		// A 503 saying mayHaveApplied=false is a definite failure: its
		// value must never show up.
		{"write that did not happen, not seen", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Write, Value: "b", Outcome: history.Fail, Status: 503}, 20, 30).
			read("a", 5, 40, 41), Pass},
		{"write that did not happen, seen", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.CAS, IfVersion: 5, Value: "b", Outcome: history.Fail, Status: 503}, 20, 30).
			read("b", 7, 40, 41), Fail},
		{"plain stale reads are not judged here", (&h{}).
			write("a", 5, true, 0, 10).
			write("b", 7, false, 20, 30).
			add(history.Op{Kind: history.Read, Value: "a", Version: 5, Found: true, Status: 200}, 40, 41), Pass},
		{"keys are independent", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Key: "other", Kind: history.Write, Value: "x", Version: 6, Status: 201}, 0, 10).
			read("a", 5, 20, 21), Pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Linearizable(tt.b.ops, LinearizableOptions{Timeout: 10 * time.Second})
			t.Log(v)
			if v.Result != tt.want {
				t.Fatalf("got %s", v)
			}
		})
	}
}

func TestLinearizableVisualization(t *testing.T) {
	dir := t.TempDir()
	b := (&h{}).write("a", 5, true, 0, 10).write("b", 7, false, 20, 30).read("a", 5, 40, 41)
	v := Linearizable(b.ops, LinearizableOptions{VisualizeDir: dir})
	if v.Result != Fail || len(v.Artifacts) != 1 {
		t.Fatalf("got %s, artifacts %v", v, v.Artifacts)
	}
	if _, err := os.Stat(filepath.Join(dir, v.Artifacts[0])); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.Problems[0], "read #3") {
		t.Errorf("problem does not name the stale read: %q", v.Problems[0])
	}
}

func TestLostWrites(t *testing.T) {
	tests := []struct {
		name string
		b    *h
		want Result
		msg  string
	}{
		{"last write survives", (&h{}).
			write("a", 5, true, 0, 10).write("b", 7, false, 20, 30).
			final("b", 7, "cp-1", 100).final("b", 7, "cp-2", 101), Pass, ""},
		{"later unknown write wins", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Write, Value: "b", Outcome: history.Unknown}, 20, 25).
			final("b", 9, "cp-1", 100), Pass, ""},
		{"lost write", (&h{}).
			write("a", 5, true, 0, 10).write("b", 7, false, 20, 30).
			final("a", 5, "cp-1", 100), Fail, "write #2 of b@7"},
		{"absent without delete", (&h{}).
			write("a", 5, true, 0, 10).
			final("", 0, "cp-1", 100), Fail, "no delete may have followed"},
		{"absent after a later delete", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Delete, Status: 200}, 20, 30).
			final("", 0, "cp-1", 100), Pass, ""},
		{"absent after an earlier delete only", (&h{}).
			add(history.Op{Kind: history.Delete, Status: 200}, 0, 5).
			write("a", 5, true, 10, 20).
			final("", 0, "cp-1", 100), Fail, "is lost"},
		{"resurrected after delete", (&h{}).
			write("a", 5, true, 0, 10).
			add(history.Op{Kind: history.Delete, Status: 200}, 20, 30).
			final("a", 5, "cp-1", 100), Fail, "delete #2"},
		{"phantom final value", (&h{}).
			write("a", 5, true, 0, 10).
			final("zz", 11, "cp-1", 100), Fail, "never written"},
		{"final reads disagree", (&h{}).
			write("a", 5, true, 0, 10).write("b", 7, false, 20, 30).
			final("b", 7, "cp-1", 100).final("a", 5, "cp-2", 101), Fail, "disagree"},
		{"no final read", (&h{}).write("a", 5, true, 0, 10), Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := LostWrites(tt.b.ops)
			t.Log(v)
			if v.Result != tt.want {
				t.Fatalf("got %s", v)
			}
			if tt.msg != "" && !strings.Contains(strings.Join(v.Problems, "\n"), tt.msg) {
				t.Errorf("problems %q do not mention %q", v.Problems, tt.msg)
			}
		})
	}
}

func TestStaleReads(t *testing.T) {
	plain := func(b *h, value string, version uint64, replica string, inc int, t0 int64) *h {
		return b.add(history.Op{Kind: history.Read, Value: value, Version: version, Found: value != "", Replica: replica, Incarnation: inc, Status: 200}, t0, t0+1)
	}
	w := func(b *h, value string, version uint64, replica string, inc int, t0, t1 int64) *h {
		return b.add(history.Op{Kind: history.Write, Value: value, Version: version, Status: 200, Replica: replica, Incarnation: inc}, t0, t1)
	}
	tests := []struct {
		name string
		b    *h
		want Result
	}{
		{"reads after own replica's write", plain(w(w(&h{}, "a", 5, "cp-1", 1, 0, 10), "b", 7, "cp-1", 1, 20, 30), "b", 7, "cp-1", 1, 40), Pass},
		{"stale read on the replica that acknowledged", plain(w(w(&h{}, "a", 5, "cp-1", 1, 0, 10), "b", 7, "cp-1", 1, 20, 30), "a", 5, "cp-1", 1, 40), Fail},
		{"old value on another replica is allowed", plain(w(w(&h{}, "a", 5, "cp-1", 1, 0, 10), "b", 7, "cp-1", 1, 20, 30), "a", 5, "cp-2", 1, 40), Pass},
		{"old value after a restart is allowed", plain(w(w(&h{}, "a", 5, "cp-1", 1, 0, 10), "b", 7, "cp-1", 1, 20, 30), "a", 5, "cp-1", 2, 40), Pass},
		{"absent on the replica that acknowledged", plain(w(&h{}, "a", 5, "cp-1", 1, 0, 10), "", 0, "cp-1", 1, 40), Fail},
		{"value nobody wrote", plain(w(&h{}, "a", 5, "cp-1", 1, 0, 10), "x", 9, "cp-2", 1, 40), Fail},
		{"wrong version", plain(w(&h{}, "a", 5, "cp-1", 1, 0, 10), "a", 6, "cp-2", 1, 40), Fail},
		{"read from the future", plain(w(&h{}, "a", 5, "cp-1", 1, 50, 60), "a", 5, "cp-2", 1, 40), Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v := StaleReads(tt.b.ops); v.Result != tt.want {
				t.Fatalf("got %s", v)
			}
		})
	}
}

func TestConverged(t *testing.T) {
	res := map[string]string{"Mesh//a": "1", "Mesh//b": "2"}
	same := []ReplicaState{
		{Replica: "cp-1", Index: 40, Digest: "abc", Resources: res},
		{Replica: "cp-2", Index: 40, Digest: "abc", Resources: res},
		{Replica: "cp-3", Index: 40, Digest: "abc", Resources: res},
	}
	if v := Converged(same); v.Result != Pass {
		t.Fatalf("identical replicas: %s", v)
	}
	diverged := append([]ReplicaState(nil), same...)
	diverged[2] = ReplicaState{Replica: "cp-3", Index: 40, Digest: "xyz", Resources: map[string]string{"Mesh//a": "1", "Mesh//b": "3", "Mesh//c": "4"}}
	v := Converged(diverged)
	if v.Result != Fail {
		t.Fatalf("diverged replica: %s", v)
	}
	if got := strings.Join(v.Problems, "\n"); !strings.Contains(got, "cp-3") || !strings.Contains(got, "different Mesh//b") || !strings.Contains(got, "extra Mesh//c") {
		t.Errorf("problems do not name the divergence: %q", got)
	}
	lagging := append([]ReplicaState(nil), same...)
	lagging[1].Index = 39
	if v := Converged(lagging); v.Result != Fail {
		t.Fatalf("different indexes: %s", v)
	}
	unread := append([]ReplicaState(nil), same...)
	unread[0] = ReplicaState{Replica: "cp-1", Err: "connection refused"}
	if v := Converged(unread); v.Result != Fail {
		t.Fatalf("unreadable replica: %s", v)
	}
}

func TestRecovered(t *testing.T) {
	all := []string{"cp-1", "cp-2", "cp-3"}
	good := func(at int64) Poll {
		var vs []View
		for _, n := range all {
			role := "follower"
			if n == "cp-2" {
				role = "leader"
			}
			vs = append(vs, View{Replica: n, Ready: true, Leader: "cp-2", Role: role, Healthy: all})
		}
		return Poll{At: at * 1e9, Views: vs}
	}
	noLeader := func(at int64) Poll {
		p := good(at)
		p.Views[0].Leader = ""
		return p
	}
	twoLeaders := func(at int64) Poll {
		p := good(at)
		p.Views[0].Role = "leader"
		return p
	}
	tests := []struct {
		name  string
		polls []Poll
		want  Result
	}{
		{"recovers in time and stays", []Poll{noLeader(10), noLeader(11), good(12), good(13), good(14)}, Pass},
		{"never recovers", []Poll{noLeader(10), noLeader(40)}, Fail},
		{"too slow", []Poll{noLeader(10), good(50), good(51)}, Fail},
		{"flaps", []Poll{good(11), noLeader(12), good(13)}, Fail},
		{"two leaders", []Poll{twoLeaders(11), twoLeaders(12)}, Fail},
		{"no polls", nil, Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Recovered(Recovery{HealedAt: 10e9, Bound: 30 * time.Second, Replicas: all, Polls: tt.polls})
			if v.Result != tt.want {
				t.Fatalf("got %s", v)
			}
		})
	}
}

func TestProxyTraffic(t *testing.T) {
	faults := []history.Fault{{Nemesis: "partition", DataPlane: true, Start: 10, End: 20}, {Nemesis: "kill", Start: 30, End: 40}}
	if v := ProxyTraffic(nil, faults); v.Result != Skipped || !v.OK() {
		t.Fatalf("no traffic: %s", v)
	}
	excused := []ProxyRequest{{Proxy: "p", Invoke: 12, Complete: 13}, {Proxy: "p", Invoke: 1, Complete: 2, OK: true}}
	if v := ProxyTraffic(excused, faults); v.Result != Pass {
		t.Fatalf("failure in a data plane fault: %s", v)
	}
	broken := []ProxyRequest{{Proxy: "p", Invoke: 32, Complete: 33, Err: "reset"}}
	if v := ProxyTraffic(broken, faults); v.Result != Fail {
		t.Fatalf("failure while only a control plane replica was down: %s", v)
	}
	// A proxy that stops serving fails every later request: one stretch
	// per proxy, broken by a success, with the first and last error.
	var stopped []ProxyRequest
	for i := range int64(50) {
		r := ProxyRequest{Proxy: "b", Invoke: 100 + 2*i, Complete: 101 + 2*i, Err: "connection refused"}
		if i == 10 {
			r.OK, r.Err = true, ""
		}
		if i == 49 {
			r.Err = "reset"
		}
		stopped = append(stopped, r)
	}
	stopped = append(stopped, ProxyRequest{Proxy: "a", Invoke: 1, Complete: 2, OK: true})
	v := ProxyTraffic(stopped, faults)
	if v.Result != Fail || len(v.Problems) != 2 || !strings.Contains(v.Summary, "49 of 51 requests judged failed, in 2 stretches") {
		t.Fatalf("stopped proxy: %s", v)
	}
	if want := "proxy b: 39 requests in a row failed from 0.000s to 0.000s outside any data plane fault: connection refused; the last: reset"; v.Problems[1] != want {
		t.Errorf("problem = %q, want %q", v.Problems[1], want)
	}
}

func TestAllOK(t *testing.T) {
	if !AllOK([]Verdict{{Result: Pass}, {Result: Skipped}}) {
		t.Error("pass and skipped should be OK")
	}
	if AllOK([]Verdict{{Result: Pass}, {Result: Unknown}}) {
		t.Error("unknown must not be OK")
	}
}

func TestNemesis(t *testing.T) {
	ok := history.Fault{Nemesis: "rolling-restart", Start: 1, End: 2}
	running := history.Fault{Nemesis: "rolling-restart", Start: 3}
	failed := history.Fault{Nemesis: "rolling-restart", Start: 3, End: 4, Error: "after restarting cp-2: timed out"}
	for _, tt := range []struct {
		name   string
		faults []history.Fault
		min    int
		want   Result
	}{
		{"no minimum", nil, 0, Skipped},
		{"enough", []history.Fault{ok, ok, ok}, 3, Pass},
		{"too few", []history.Fault{ok, ok, running}, 3, Fail},
		{"one failed", []history.Fault{ok, ok, ok, failed}, 3, Fail},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := Nemesis(tt.faults, tt.min)
			t.Log(v)
			if v.Result != tt.want {
				t.Fatalf("got %s", v)
			}
		})
	}
}
