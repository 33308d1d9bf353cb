package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func encodeCmd(t testing.TB, c Command) []byte {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func report(mesh, name, id, replica, instance string, connect time.Time, gen uint64, disconnect *time.Time) InsightReport {
	return InsightReport{Mesh: mesh, Name: name, Subscription: &resource.DiscoverySubscription{
		ID: id, ControlPlaneInstanceID: replica, ReplicaInstance: instance, ConnectTime: connect,
		DisconnectTime: disconnect, Generation: gen}}
}

func insightOf(t *testing.T, f *FSM, name string) *resource.DataplaneInsightSpec {
	t.Helper()
	r, ok := f.Get(insightKey("default", name))
	if !ok {
		t.Fatalf("no insight for %s", name)
	}
	return r.Spec.(*resource.DataplaneInsightSpec)
}

// TestInsightsAndDeregister follows a proxy-registered Dataplane through
// connect, a hop to another replica, a dead replica and deregistration.
func TestInsightsAndDeregister(t *testing.T) {
	activeSchema = resourceSchema{}
	defer func() { activeSchema = testSchema{} }()
	f, rec := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(ensureCmd(t0))
	dp, err := resource.Decode([]byte(`{"type":"Dataplane","mesh":"default","name":"web-1","labels":{"kuma.io/registered-by":"proxy"},"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"web"}}]}}`), resource.JSON)
	if err != nil {
		t.Fatal(err)
	}
	resource.Default(dp)
	a.mustApply(putCmd(dp, u64(0), t0))
	webIdx := f.ServiceIndex("default", "web")
	if webIdx != a.idx || f.ChangeIndex(resource.TypeDataplane, "default") != a.idx {
		t.Fatalf("change indexes after put: service %d, type %d, want %d", webIdx, f.ChangeIndex(resource.TypeDataplane, "default"), a.idx)
	}

	// A report for a Dataplane that does not exist is ignored.
	at := t0.Add(time.Second)
	a.mustApply(encodeCmd(t, Command{Type: CmdInsights, Time: at, Insights: &InsightsCommand{Reports: []InsightReport{
		report("default", "web-1", "s1", "cp-1", "i1", at, 1, nil),
		report("default", "ghost", "s9", "cp-1", "i1", at, 1, nil),
	}}}))
	if _, ok := f.Get(insightKey("default", "ghost")); ok {
		t.Fatal("insight created for a missing Dataplane")
	}
	if replica, online := insightOf(t, f, "web-1").Online(); !online || replica != "cp-1" {
		t.Fatalf("online = %v on %q", online, replica)
	}
	if f.ServiceIndex("default", "web") != webIdx {
		t.Fatal("an insight changed the service index")
	}

	// Deregistration is refused while the proxy is online.
	dereg := func(at time.Time) *Result {
		return a.apply(encodeCmd(t, Command{Type: CmdDeregister, Time: at,
			Deregister: &DeregisterCommand{Key: dp.Key(), Grace: 10 * time.Second}}))
	}
	if res := dereg(at.Add(time.Hour)); !errors.Is(res.Err, ErrProxyOnline) {
		t.Fatalf("deregister of an online proxy: %v", res.Err)
	}

	// The proxy hops: cp-2 reports the new stream, cp-1 the close of the old one.
	hop := at.Add(5 * time.Second)
	a.mustApply(encodeCmd(t, Command{Type: CmdInsights, Time: hop, Insights: &InsightsCommand{Reports: []InsightReport{
		report("default", "web-1", "s2", "cp-2", "i2", hop, 1, nil),
	}}}))
	a.mustApply(encodeCmd(t, Command{Type: CmdInsights, Time: hop, Insights: &InsightsCommand{Reports: []InsightReport{
		report("default", "web-1", "s1", "cp-1", "i1", at, 2, &hop),
	}}}))
	// A stale report (older generation) does not reopen the closed stream.
	a.mustApply(encodeCmd(t, Command{Type: CmdInsights, Time: hop, Insights: &InsightsCommand{Reports: []InsightReport{
		report("default", "web-1", "s1", "cp-1", "i1", at, 1, nil),
	}}}))
	ins := insightOf(t, f, "web-1")
	if replica, online := ins.Online(); !online || replica != "cp-2" || len(ins.Subscriptions) != 2 || ins.Subscriptions[0].Online() {
		t.Fatalf("after hop: online=%v replica=%q subs=%d", online, replica, len(ins.Subscriptions))
	}
	if res := dereg(hop.Add(time.Hour)); !errors.Is(res.Err, ErrProxyOnline) {
		t.Fatalf("deregister after a hop: %v", res.Err)
	}

	// cp-2 restarted as instance i3: the leader closes its old streams only.
	dead := hop.Add(20 * time.Second)
	a.mustApply(encodeCmd(t, Command{Type: CmdInsights, Time: dead, Insights: &InsightsCommand{
		Offline: []OfflineMark{{Replica: "cp-2", KeepInstance: "i3"}}}}))
	if _, online := insightOf(t, f, "web-1").Online(); online {
		t.Fatal("still online after the offline mark")
	}
	if res := dereg(dead.Add(5 * time.Second)); !errors.Is(res.Err, ErrProxyOnline) {
		t.Fatalf("deregister within the grace period: %v", res.Err)
	}

	// A snapshot taken now restores to the same state, indexes included.
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g, _ := newTestFSM(t)
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if g.Digest() != f.Digest() || g.ServiceIndex("default", "web") != webIdx {
		t.Fatal("restored state differs")
	}

	if res := dereg(dead.Add(11 * time.Second)); res.Err != nil {
		t.Fatalf("deregister after the grace period: %v", res.Err)
	}
	if _, ok := f.Get(dp.Key()); ok {
		t.Fatal("Dataplane not removed")
	}
	if _, ok := f.Get(insightKey("default", "web-1")); ok {
		t.Fatal("insight not removed with its Dataplane")
	}
	if got := f.ServiceIndex("default", "web"); got != a.idx {
		t.Fatalf("service index after removal = %d, want %d (deletions count)", got, a.idx)
	}
	if rec.count() != 0 {
		t.Fatal("fatal")
	}
}

// TestDeregisterSparesAPIDataplanes: only proxy-registered Dataplanes go.
func TestDeregisterSparesAPIDataplanes(t *testing.T) {
	activeSchema = resourceSchema{}
	defer func() { activeSchema = testSchema{} }()
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(ensureCmd(t0))
	dp, err := resource.Decode([]byte(`{"type":"Dataplane","mesh":"default","name":"api-1","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"web"}}]}}`), resource.JSON)
	if err != nil {
		t.Fatal(err)
	}
	a.mustApply(putCmd(dp, u64(0), t0))
	res := a.apply(encodeCmd(t, Command{Type: CmdDeregister, Time: t0.Add(time.Hour),
		Deregister: &DeregisterCommand{Key: dp.Key(), Grace: time.Second}}))
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("deregister of an API Dataplane: %v", res.Err)
	}
	if _, ok := f.Get(dp.Key()); !ok {
		t.Fatal("API Dataplane removed")
	}
}

// TestChangeIndexesCountDeletes: a change index never goes back, even when
// the newest resource is deleted (so xDS versions never go back either).
func TestChangeIndexesCountDeletes(t *testing.T) {
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(putCmd(mesh("m"), nil, t0))
	a.mustApply(putCmd(dataplane("m", "a", "10.0.0.1", "web"), nil, t0))
	a.mustApply(putCmd(dataplane("m", "b", "10.0.0.2", "web", "api"), nil, t0))
	if got := f.ServiceIndex("m", "api"); got != 3 {
		t.Fatalf("api index = %d, want 3", got)
	}
	a.mustApply(putCmd(dataplane("m", "b", "10.0.0.2", "web"), nil, t0)) // b stops providing api
	if got := f.ServiceIndex("m", "api"); got != 4 {
		t.Fatalf("api index after b dropped it = %d, want 4", got)
	}
	a.mustApply(deleteCmd(resource.Key{Type: dataplaneType, Mesh: "m", Name: "b"}, 0, t0))
	if got := f.ServiceIndex("m", "web"); got != 5 {
		t.Fatalf("web index after delete = %d, want 5", got)
	}
	a.mustApply(putCmd(policy("m", "p", "x"), nil, t0))
	a.mustApply(deleteCmd(resource.Key{Type: meshType, Name: "m"}, 0, t0))
	if got := f.ChangeIndex(policyType, "m"); got != 7 {
		t.Fatalf("policy index after the mesh cascade = %d, want 7", got)
	}
	f.Read(func(v View) {
		if v.ServiceIndex("m", "web") != 7 || len(v.DataplanesByService("m", "web")) != 0 {
			t.Fatal("view disagrees")
		}
	})
}

// TestDeregisterNeedsAConnectionRecord: a proxy-registered Dataplane
// without an insight is kept, however old.
func TestDeregisterNeedsAConnectionRecord(t *testing.T) {
	activeSchema = resourceSchema{}
	defer func() { activeSchema = testSchema{} }()
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(ensureCmd(t0))
	dp, err := resource.Decode([]byte(`{"type":"Dataplane","mesh":"default","name":"p-1","labels":{"kuma.io/registered-by":"proxy"},"networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"web"}}]}}`), resource.JSON)
	if err != nil {
		t.Fatal(err)
	}
	a.mustApply(putCmd(dp, u64(0), t0))
	res := a.apply(encodeCmd(t, Command{Type: CmdDeregister, Time: t0.Add(24 * time.Hour),
		Deregister: &DeregisterCommand{Key: dp.Key(), Grace: time.Second}}))
	if !errors.Is(res.Err, ErrProxyOnline) {
		t.Fatalf("deregister without an insight: %v", res.Err)
	}
	if _, ok := f.Get(dp.Key()); !ok {
		t.Fatal("removed without a connection record")
	}
}
