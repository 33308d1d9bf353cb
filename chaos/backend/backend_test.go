package backend

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBlockedPeers(t *testing.T) {
	got := blockedPeers([]Pair{{"a", "b"}, {"a", "c"}, {"b", "a"}, {"c", "c"}})
	want := map[string][]string{"a": {"b", "c"}, "b": {"a"}, "c": {"a"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(blockedPeers(nil)) != 0 {
		t.Error("nil cut blocks something")
	}
}

func TestFilterRules(t *testing.T) {
	r := filterRules(linkState{blocked: []string{"10.0.0.2"}, netem: Netem{Loss: 2.5}})
	for _, want := range []string{
		"*filter\n", "-A INPUT -i lo -j ACCEPT\n",
		"-A INPUT -s 10.0.0.2/32 -j DROP\n", "-A OUTPUT -d 10.0.0.2/32 -j DROP\n",
		"-A INPUT -m statistic --mode random --probability 0.0250 -j DROP\n",
		"COMMIT\n",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("rules lack %q:\n%s", want, r)
		}
	}
	if strings.Contains(filterRules(linkState{}), "DROP") {
		t.Error("empty state drops traffic")
	}
}

func TestNetemString(t *testing.T) {
	if s := (Netem{}).String(); s != "none" {
		t.Errorf("zero = %q", s)
	}
	n := Netem{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 3, Rate: 512}
	if s := n.String(); s != "delay 100ms±10ms, loss 3.0%, rate 512kbit" {
		t.Errorf("got %q", s)
	}
}

func TestRunArgs(t *testing.T) {
	all := []replicaSpec{
		{name: "cp-1", host: "10.0.0.11", api: "10.0.0.11:5681", gossip: "10.0.0.11:5691", dataDir: "/d1"},
		{name: "cp-2", host: "10.0.0.12", api: "10.0.0.12:5681", gossip: "10.0.0.12:5691", dataDir: "/d2"},
		{name: "cp-3", host: "10.0.0.13", api: "10.0.0.13:5681", gossip: "10.0.0.13:5691", dataDir: "/d3"},
	}
	args := strings.Join(runArgs(all[1], all, []string{"--raft-snapshot-threshold=512"}), " ")
	for _, want := range []string{"run --name cp-2", "--data-dir /d2", "--advertise-host 10.0.0.12",
		"--bootstrap-expect 3", "--join 10.0.0.11:5691,10.0.0.13:5691", "--raft-snapshot-threshold=512"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := freePorts(10)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < 10000 || p > 32000 || seen[p] {
			t.Errorf("bad port %d in %v", p, ports)
		}
		seen[p] = true
	}
}
