package resource

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const dpYAML = `
type: Dataplane
mesh: default
name: web-1
labels:
  team: a
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 80
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
  outbound:
  - port: 10001
    tags:
      kuma.io/service: backend
`

func TestDecodeYAMLAndRoundTrip(t *testing.T) {
	r, err := Decode([]byte(dpYAML), YAML)
	if err != nil {
		t.Fatal(err)
	}
	if r.Key() != (Key{Type: TypeDataplane, Mesh: "default", Name: "web-1"}) {
		t.Fatalf("key = %v", r.Key())
	}
	dp := r.Spec.(*DataplaneSpec)
	if dp.Networking.Inbound[0].Port != 8080 || dp.Networking.Outbound[0].Tags[ServiceTag] != "backend" {
		t.Fatalf("spec = %+v", dp)
	}
	if errs := Validate(r); len(errs) != 0 {
		t.Fatalf("valid dataplane rejected: %v", errs)
	}
	r.CreationTime = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)
	r.ModificationTime = time.Date(2024, 1, 2, 3, 4, 6, 1, time.FixedZone("x", 3600))
	r.Version = 42
	b, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"version"`) {
		t.Fatalf("API rendering carries version: %s", b)
	}
	if !strings.HasPrefix(string(b), `{"type":"Dataplane","mesh":"default","name":"web-1","creationTime":"2024-01-02T03:04:05.123456789Z"`) {
		t.Fatalf("unexpected rendering: %s", b)
	}
	back, err := Decode(b, JSON)
	if err != nil {
		t.Fatalf("decode own output: %v\n%s", err, b)
	}
	want := *r
	want.Version = 0
	want.ModificationTime = r.ModificationTime.UTC()
	if !reflect.DeepEqual(back, &want) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", back, &want)
	}

	sb, err := EncodeStored(r)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := DecodeStored(sb)
	if err != nil {
		t.Fatal(err)
	}
	want.Version = 42
	if !reflect.DeepEqual(stored, &want) {
		t.Fatalf("stored round trip differs:\n got %+v\nwant %+v", stored, &want)
	}
	if !stored.ModificationTime.Equal(r.ModificationTime) {
		t.Fatal("time changed")
	}
}

func TestRoundTripEveryType(t *testing.T) {
	docs := map[Type]string{
		TypeMesh:                  `{"type":"Mesh","name":"default","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin","dpCert":{"rotation":{"expiration":"1d"}},"conf":{"caCert":{"RSAbits":2048,"expiration":"10y"}}}]},"networking":{"outbound":{"passthrough":false}},"routing":{"zoneEgress":true},"meshServices":{"mode":"Exclusive"}}`,
		TypeDataplane:             `{"type":"Dataplane","mesh":"default","name":"gw","networking":{"address":"gw.local","gateway":{"type":"BUILTIN","tags":{"kuma.io/service":"edge"}}}}`,
		TypeMeshTrafficPermission: `{"type":"MeshTrafficPermission","mesh":"default","name":"allow-all","spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`,
		TypeMeshTimeout:           `{"type":"MeshTimeout","mesh":"default","name":"t","spec":{"targetRef":{"kind":"Mesh"},"to":[{"targetRef":{"kind":"Mesh"},"default":{"connectionTimeout":"5s","idleTimeout":"1h","http":{"requestTimeout":"15s","streamIdleTimeout":"30m"}}}]}}`,
		TypeTrafficRoute:          `{"type":"TrafficRoute","mesh":"default","name":"route-all","sources":[{"match":{"kuma.io/service":"*"}}],"destinations":[{"match":{"kuma.io/service":"*"}}],"conf":{"destination":{"kuma.io/service":"*"},"loadBalancer":{"roundRobin":{}},"http":[{"match":{"path":{"prefix":"/api"}},"split":[{"weight":90,"destination":{"kuma.io/service":"api","version":"v1"}},{"weight":10,"destination":{"kuma.io/service":"api","version":"v2"}}]}]}}`,
		TypeZoneIngress:           `{"type":"ZoneIngress","name":"zi","zone":"east","networking":{"address":"10.0.0.5","advertisedAddress":"1.2.3.4","port":10001,"advertisedPort":10001},"availableServices":[{"tags":{"kuma.io/service":"web"},"instances":2,"mesh":"default"}]}`,
		TypeZoneEgress:            `{"type":"ZoneEgress","name":"ze","networking":{"address":"10.0.0.6","port":10002,"admin":{"port":9901}}}`,
		TypeZone:                  `{"type":"Zone","name":"east","enabled":false}`,
		TypeDataplaneInsight:      `{"type":"DataplaneInsight","mesh":"default","name":"dp-1","subscriptions":[{"id":"s1","controlPlaneInstanceId":"cp-1","replicaInstance":"abc","connectTime":"2026-01-02T03:04:05.123Z","disconnectTime":"2026-01-02T03:05:05Z","status":{"lastUpdateTime":"2026-01-02T03:04:06Z","total":{"responsesSent":3,"responsesAcknowledged":2,"responsesRejected":1},"cds":{"responsesSent":1,"responsesAcknowledged":1,"responsesRejected":0},"eds":{"responsesSent":1,"responsesAcknowledged":1,"responsesRejected":0},"lds":{"responsesSent":1,"responsesAcknowledged":0,"responsesRejected":1},"configVersion":"lds=7 cds=7 eds=9","lastNackError":"bad"},"generation":4}]}`,
	}
	for _, d := range Descriptors() {
		doc, ok := docs[d.Type]
		if !ok {
			t.Errorf("no round-trip case for %s", d.Type)
			continue
		}
		t.Run(string(d.Type), func(t *testing.T) {
			r, err := Decode([]byte(doc), JSON)
			if err != nil {
				t.Fatal(err)
			}
			if errs := Validate(r); len(errs) != 0 {
				t.Fatalf("valid %s rejected: %v", d.Type, errs)
			}
			b, err := r.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			again, err := Decode(b, JSON)
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if !reflect.DeepEqual(r, again) {
				t.Fatalf("round trip differs\n%s", b)
			}
			y, err := EncodeYAML(r)
			if err != nil {
				t.Fatal(err)
			}
			fromYAML, err := Decode(y, YAML)
			if err != nil {
				t.Fatalf("%v\n%s", err, y)
			}
			if !reflect.DeepEqual(r, fromYAML) {
				t.Fatalf("YAML round trip differs\n%s", y)
			}
			c := Clone(r)
			if !reflect.DeepEqual(r, c) {
				t.Fatal("clone differs")
			}
			if d.Scope == ScopeGlobal && strings.Contains(string(b), `"mesh":"`) && d.Type != TypeZoneIngress {
				t.Fatalf("global resource renders mesh: %s", b)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		f         Format
		field     string
		reason    string // substring
	}{
		{"unknown field", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"inboundd":[]}}`, JSON, "networking.inboundd", "unknown field"},
		{"wrong type port", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"inbound":[{"port":"80"}]}}`, JSON, "networking.inbound[0].port", "must be a number"},
		{"negative port", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"inbound":[{"port":-1}]}}`, JSON, "networking.inbound[0].port", "must not be negative"},
		{"fraction port", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"inbound":[{"port":1.5}]}}`, JSON, "networking.inbound[0].port", "integer"},
		{"huge port", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"inbound":[{"port":99999999999}]}}`, JSON, "networking.inbound[0].port", "at most 4294967295"},
		{"tag not string", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"inbound":[{"tags":{"x":1}}]}}`, JSON, `networking.inbound[0].tags["x"]`, "must be a string"},
		{"inbound not array", `{"type":"Dataplane","mesh":"m","name":"a","networking":{"inbound":{}}}`, JSON, "networking.inbound", "must be an array"},
		{"missing type", `{"name":"a"}`, JSON, "type", "is required"},
		{"unknown type", `{"type":"Foo","name":"a"}`, JSON, "type", `unknown type "Foo"`},
		{"type not string", `{"type":1}`, JSON, "type", "must be a string"},
		{"spec under spec: flat field", `{"type":"MeshTimeout","mesh":"m","name":"a","targetRef":{"kind":"Mesh"}}`, JSON, "targetRef", "unknown field"},
		{"spec field unknown", `{"type":"MeshTimeout","mesh":"m","name":"a","spec":{"too":[]}}`, JSON, "spec.too", "unknown field"},
		{"flat type with spec", `{"type":"Mesh","name":"a","spec":{}}`, JSON, "spec", "unknown field"},
		{"bad time", `{"type":"Mesh","name":"a","creationTime":"yesterday"}`, JSON, "creationTime", "RFC 3339"},
		{"syntax", "{\"type\":\n\"Mesh\",,}", JSON, "", "line 2"},
		{"trailing", `{"type":"Mesh","name":"a"} {}`, JSON, "", "after the document"},
		{"empty", ``, JSON, "", "empty document"},
		{"not object", `[1]`, JSON, "", "must be a JSON/YAML object"},
		{"yaml syntax", "type: Mesh\nname: [a\n", YAML, "", "line"},
		{"yaml unknown", "type: Mesh\nname: a\nmtls:\n  enabledBackend: x\n  backend: []\n", YAML, "mtls.backend", "unknown field"},
		{"bool", `{"type":"Mesh","name":"a","routing":{"zoneEgress":"yes"}}`, JSON, "routing.zoneEgress", "must be a boolean"},
		{"duration type", `{"type":"MeshTimeout","mesh":"m","name":"a","spec":{"to":[{"default":{"idleTimeout":5}}]}}`, JSON, "spec.to[0].default.idleTimeout", "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc), tt.f)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("want *DecodeError, got %v", err)
			}
			if de.Field != tt.field || !strings.Contains(de.Reason, tt.reason) {
				t.Fatalf("got field %q reason %q; want field %q reason containing %q", de.Field, de.Reason, tt.field, tt.reason)
			}
		})
	}
}

func TestDecodeAll(t *testing.T) {
	stream := "---\n# comment only\n---\ntype: Mesh\nname: a\n---\n\n--- \ntype: Zone\nname: z\n...\n"
	rs, err := DecodeAll([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Type != TypeMesh || rs[1].Type != TypeZone {
		t.Fatalf("got %d resources: %+v", len(rs), rs)
	}
	rs, err = DecodeAll([]byte(`  {"type":"Mesh","name":"j"}`))
	if err != nil || len(rs) != 1 || rs[0].Name != "j" {
		t.Fatalf("json: %v %v", rs, err)
	}
	_, err = DecodeAll([]byte("type: Mesh\nname: a\n---\ntype: Mesh\nname: b\nbogus: 1\n"))
	var de *DecodeError
	if !errors.As(err, &de) || de.Field != "bogus" || !strings.Contains(de.Reason, "document 2") {
		t.Fatalf("want error naming document 2 and field bogus, got %v", err)
	}
}

func TestDefault(t *testing.T) {
	r, err := Decode([]byte(dpYAML), YAML)
	if err != nil {
		t.Fatal(err)
	}
	dp := r.Spec.(*DataplaneSpec)
	dp.Networking.Inbound[0].ServicePort = 0
	// Validate must not default.
	_ = Validate(r)
	if dp.Networking.Inbound[0].ServicePort != 0 || dp.Networking.Outbound[0].Address != "" {
		t.Fatal("Validate changed the resource")
	}
	Default(r)
	if dp.Networking.Inbound[0].ServicePort != 8080 {
		t.Fatalf("servicePort = %d", dp.Networking.Inbound[0].ServicePort)
	}
	if dp.Networking.Outbound[0].Address != "127.0.0.1" {
		t.Fatalf("outbound address = %q", dp.Networking.Outbound[0].Address)
	}
	z := &Resource{Meta: Meta{Type: TypeZone, Name: "z"}, Spec: &ZoneSpec{}}
	Default(z)
	if b, _ := z.MarshalJSON(); !bytes.Contains(b, []byte(`"enabled":true`)) {
		t.Fatalf("zone default not rendered: %s", b)
	}
}

func TestDataplaneServices(t *testing.T) {
	r := &Resource{Meta: Meta{Type: TypeDataplane}, Spec: &DataplaneSpec{Networking: DataplaneNetworking{Inbound: []Inbound{
		{Tags: map[string]string{ServiceTag: "b"}}, {Tags: map[string]string{ServiceTag: "a"}}, {Tags: map[string]string{ServiceTag: "b"}}, {},
	}}}}
	if got := DataplaneServices(r); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("got %v", got)
	}
	if got := DataplaneServices(&Resource{Meta: Meta{Type: TypeMesh}, Spec: &MeshSpec{}}); got != nil {
		t.Fatalf("mesh: %v", got)
	}
	if DataplaneServices(nil) != nil {
		t.Fatal("nil")
	}
}

func TestMeshTimeoutAccessors(t *testing.T) {
	r, err := Decode([]byte(`{"type":"MeshTimeout","mesh":"m","name":"t","spec":{"to":[{"targetRef":{"kind":"Mesh"},"default":{"idleTimeout":"1m30s","http":{"requestTimeout":"0s"}}}]}}`), JSON)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Spec.(*MeshTimeoutSpec)
	p := s.To[0].Default.Parsed()
	if p.IdleTimeout == nil || *p.IdleTimeout != 90*time.Second {
		t.Fatalf("idle = %v", p.IdleTimeout)
	}
	if p.RequestTimeout == nil || *p.RequestTimeout != 0 || p.ConnectionTimeout != nil {
		t.Fatalf("parsed = %+v", p)
	}
	if s.EffectiveTargetRef().Kind != KindMesh {
		t.Fatal("default targetRef")
	}
}

func TestDescriptors(t *testing.T) {
	for plural, typ := range map[string]Type{
		"meshes": TypeMesh, "dataplanes": TypeDataplane, "meshtrafficpermissions": TypeMeshTrafficPermission,
		"meshtimeouts": TypeMeshTimeout, "traffic-routes": TypeTrafficRoute, "zoneingresses": TypeZoneIngress,
		"zoneegresses": TypeZoneEgress, "zones": TypeZone,
	} {
		d, ok := DescriptorByPlural(plural)
		if !ok || d.Type != typ {
			t.Errorf("%s -> %v", plural, d)
		}
	}
	if d, _ := DescriptorOf(TypeZone); !d.GlobalOnly || d.Scope != ScopeGlobal {
		t.Error("zone descriptor")
	}
}

func TestDecodeStoredErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"type":"Nope"}`, `{"type":"Dataplane","spec":{"networking":1}}`, `{"type":"Mesh","creationTime":"x"}`} {
		if _, err := DecodeStored([]byte(in)); err == nil {
			t.Errorf("%q: want error", in)
		}
	}
}

// Kuma's kumactl 2.14 sends back the kri, snis and status its server renders.
func TestDecodeAcceptsKumaServerFields(t *testing.T) {
	doc := `{"type":"MeshTimeout","mesh":"default","name":"t1","kri":"kri_mt_default___t1_","snis":[],"status":{},
"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"idleTimeout":"10s"}}]}}`
	r, err := Decode([]byte(doc), JSON)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got := r.KRI(); got != "kri_mt_default___t1_" {
		t.Fatalf("KRI() = %q", got)
	}
	out, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"kri":"kri_mt_default___t1_"`) {
		t.Fatalf("rendered without kri: %s", out)
	}
	if _, err := Decode([]byte(`{"type":"Mesh","name":"m","kri":5}`), JSON); err == nil || !strings.Contains(err.Error(), "kri") {
		t.Fatalf("a non-string kri: err = %v, want one naming kri", err)
	}
}
