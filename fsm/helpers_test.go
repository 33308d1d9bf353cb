package fsm

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Test resource types, independent of the resource package's real ones.
type testMeshSpec struct {
	MTLS string `json:"mtls,omitempty"`
}

func (*testMeshSpec) Validate() resource.ValidationErrors { return nil }
func (*testMeshSpec) Default()                            {}

type testDataplaneSpec struct {
	Address  string   `json:"address"`
	Services []string `json:"services,omitempty"`
}

func (s *testDataplaneSpec) Validate() resource.ValidationErrors {
	var v resource.ValidationErrors
	if s.Address == "" {
		v.Add("networking.address", "must not be empty")
	}
	return v
}
func (*testDataplaneSpec) Default() {}

type testPolicySpec struct {
	Rule string `json:"rule"`
}

func (*testPolicySpec) Validate() resource.ValidationErrors { return nil }
func (*testPolicySpec) Default()                            {}

const policyType resource.Type = "TestPolicy"

var testDescriptors = map[resource.Type]*resource.Descriptor{
	meshType:      {Type: meshType, Plural: "meshes", Scope: resource.ScopeGlobal, NewSpec: func() resource.Spec { return &testMeshSpec{} }},
	dataplaneType: {Type: dataplaneType, Plural: "dataplanes", Scope: resource.ScopeMesh, NewSpec: func() resource.Spec { return &testDataplaneSpec{} }},
	policyType:    {Type: policyType, Plural: "test-policies", Scope: resource.ScopeMesh, NewSpec: func() resource.Spec { return &testPolicySpec{} }},
}

type testSchema struct{}

func (testSchema) descriptor(t resource.Type) (*resource.Descriptor, bool) {
	d, ok := testDescriptors[t]
	return d, ok
}
func (testSchema) encodeResource(r *resource.Resource) ([]byte, error) { return encodeStoredJSON(r) }
func (s testSchema) decodeResource(data []byte) (*resource.Resource, error) {
	return decodeStoredJSON(data, s.descriptor)
}
func (testSchema) validate(r *resource.Resource) resource.ValidationErrors { return r.Spec.Validate() }
func (testSchema) dataplaneServices(r *resource.Resource) []string {
	if s, ok := r.Spec.(*testDataplaneSpec); ok {
		return s.Services
	}
	return nil
}

func TestMain(m *testing.M) {
	activeSchema = testSchema{}
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)

// fatalRecorder collects OnFatal calls.
type fatalRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (r *fatalRecorder) fn(err error) { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() }
func (r *fatalRecorder) count() int   { r.mu.Lock(); defer r.mu.Unlock(); return len(r.errs) }

func newTestFSM(t testing.TB) (*FSM, *fatalRecorder) {
	rec := &fatalRecorder{}
	return New(Options{OnFatal: rec.fn, Logger: slog.New(slog.DiscardHandler)}), rec
}

func mesh(name string) *resource.Resource {
	return &resource.Resource{Meta: resource.Meta{Type: meshType, Name: name}, Spec: &testMeshSpec{}}
}

func dataplane(m, name, addr string, services ...string) *resource.Resource {
	return &resource.Resource{Meta: resource.Meta{Type: dataplaneType, Mesh: m, Name: name},
		Spec: &testDataplaneSpec{Address: addr, Services: services}}
}

func policy(m, name, rule string) *resource.Resource {
	return &resource.Resource{Meta: resource.Meta{Type: policyType, Mesh: m, Name: name}, Spec: &testPolicySpec{Rule: rule}}
}

func u64(v uint64) *uint64 { return &v }

func putCmd(r *resource.Resource, ifVersion *uint64, at time.Time) []byte {
	b, err := Encode(Command{Type: CmdPut, Time: at, Put: &PutCommand{Resource: r, IfVersion: ifVersion}})
	if err != nil {
		panic(err)
	}
	return b
}

func deleteCmd(k resource.Key, ifVersion uint64, at time.Time) []byte {
	b, err := Encode(Command{Type: CmdDelete, Time: at, Delete: &DeleteCommand{Key: k, IfVersion: ifVersion}})
	if err != nil {
		panic(err)
	}
	return b
}

func ensureCmd(at time.Time) []byte {
	b, err := Encode(Command{Type: CmdEnsureDefaultMesh, Time: at})
	if err != nil {
		panic(err)
	}
	return b
}

// applier feeds entries with increasing indexes.
type applier struct {
	t   testing.TB
	f   *FSM
	idx uint64
}

func (a *applier) apply(data []byte) *Result {
	a.idx++
	res := a.f.Apply(a.idx, data)
	if res == nil {
		a.t.Fatalf("Apply(%d) returned nil", a.idx)
	}
	return res
}

func (a *applier) mustApply(data []byte) *Result {
	a.t.Helper()
	res := a.apply(data)
	if res.Err != nil {
		a.t.Fatalf("Apply(%d): %v", a.idx, res.Err)
	}
	return res
}
