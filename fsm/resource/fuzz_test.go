package resource

import (
	"bytes"
	"reflect"
	"testing"
)

var fuzzSeeds = []string{
	dpYAML,
	`{"type":"Mesh","name":"default","mtls":{"enabledBackend":"a","backends":[{"name":"a","type":"builtin","conf":{"x":[1,2.5,"s",null,true]}}]}}`,
	`{"type":"MeshTimeout","mesh":"m","name":"t","spec":{"to":[{"targetRef":{"kind":"Mesh"},"default":{"idleTimeout":"1s"}}]}}`,
	`{"type":"MeshTrafficPermission","mesh":"m","name":"p","spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`,
	`{"type":"TrafficRoute","mesh":"m","name":"r","conf":{"http":[{"match":{"headers":{"a":null}}}]}}`,
	`{"type":"ZoneIngress","name":"zi","networking":{"port":1},"creationTime":"2020-01-01T00:00:00+05:00"}`,
	`{"type":"Zone","name":"z","enabled":true,"labels":{"a":"b"}}`,
	"type: ZoneEgress\nname: e\nnetworking: {address: 1.1.1.1, port: 1e3}\n",
	`{"type":"Dataplane","networking":{"inbound":[{"tags":{}}],"outbound":[]}}`,
	"",
	"null",
	"- a\n- b",
}

func FuzzDecodeValidate(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []Format{JSON, YAML} {
			r, err := Decode(data, format)
			if err != nil {
				continue
			}
			_ = Validate(r)
			c := Clone(r)
			Default(c)
			_ = Validate(c)
			b, err := r.MarshalJSON()
			if err != nil {
				t.Fatalf("marshal decoded resource: %v", err)
			}
			again, err := Decode(b, JSON)
			if err != nil {
				t.Fatalf("decode own output: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(r, again) {
				t.Fatalf("round trip differs\n in: %q\nout: %s", data, b)
			}
		}
		_, _ = DecodeAll(data)
	})
}

func FuzzDecodeStored(f *testing.F) {
	for _, s := range fuzzSeeds {
		if r, err := Decode([]byte(s), YAML); err == nil {
			r.Version = 7
			b, err := EncodeStored(r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"type":"Dataplane","spec":{"networking":{"inbound":[]}},"labels":{}}`))
	f.Add([]byte(`{"type":"Mesh","spec":{"mtls":{"backends":[{"conf":{ "a" : 1 }}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeStored(data)
		if err != nil {
			return
		}
		_ = Validate(r)
		b1, err := EncodeStored(r)
		if err != nil {
			return // e.g. a time outside what RFC 3339 can carry
		}
		r2, err := DecodeStored(b1)
		if err != nil {
			t.Fatalf("decode own output: %v\n%s", err, b1)
		}
		b2, err := EncodeStored(r2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b1, b2)
		}
		r3, err := DecodeStored(b2)
		if err != nil || !reflect.DeepEqual(r2, r3) {
			t.Fatalf("stored round trip differs: %v", err)
		}
	})
}
