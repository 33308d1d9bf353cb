package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Format is the wire format of a resource document.
type Format int

const (
	JSON Format = iota
	YAML
)

// DecodeError is returned for malformed or unknown input: Field names the
// offending field ("type", "networking.inbound[0].port", or "" for syntax
// errors) and Reason says what is wrong.
type DecodeError struct {
	Field  string
	Reason string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Meta keys of the flat document. "version" is accepted on input (the
// stored codec writes it) but never rendered by MarshalJSON.
const (
	keyType             = "type"
	keyMesh             = "mesh"
	keyName             = "name"
	keyLabels           = "labels"
	keyCreationTime     = "creationTime"
	keyModificationTime = "modificationTime"
	keyVersion          = "version"
	keySpec             = "spec"
	// Written by Kuma's servers and sent back by its kumactl 2.14 on apply;
	// derived or server-owned, so accepted and ignored on input.
	keyKRI    = "kri"
	keySNIs   = "snis"
	keyStatus = "status"
)

// Decode parses one resource document in Kuma's flat shape (type, mesh, name,
// labels, creationTime, modificationTime, then the spec fields). Unknown types
// and unknown fields are a *DecodeError. It does not validate: call Validate.
func Decode(data []byte, f Format) (*Resource, error) {
	js := data
	if f == YAML {
		var err error
		if js, err = yamlToJSON(data); err != nil {
			return nil, err
		}
	}
	tree, err := parseJSON(js)
	if err != nil {
		return nil, err
	}
	return decodeTree(tree)
}

func yamlToJSON(data []byte) ([]byte, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		return nil, &DecodeError{Reason: "invalid YAML: " + msg}
	}
	return js, nil
}

func parseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, jsonSyntaxError(data, err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, &DecodeError{Reason: "invalid JSON: unexpected data after the document"}
	}
	return tree, nil
}

func jsonSyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return &DecodeError{Reason: fmt.Sprintf("invalid JSON at line %d, column %d: %s", line, col, se.Error())}
	}
	if errors.Is(err, io.EOF) {
		return &DecodeError{Reason: "empty document"}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &DecodeError{Reason: "invalid JSON: unexpected end of input"}
	}
	return &DecodeError{Reason: "invalid JSON: " + err.Error()}
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// decodeTree turns a generic JSON tree into a Resource.
func decodeTree(tree any) (*Resource, error) {
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, &DecodeError{Reason: "a resource must be a JSON/YAML object"}
	}
	rawType, ok := obj[keyType]
	if !ok || rawType == nil {
		return nil, &DecodeError{Field: keyType, Reason: "is required"}
	}
	ts, ok := rawType.(string)
	if !ok {
		return nil, &DecodeError{Field: keyType, Reason: "must be a string"}
	}
	d, ok := DescriptorOf(Type(ts))
	if !ok {
		return nil, &DecodeError{Field: keyType, Reason: fmt.Sprintf("unknown type %q", ts)}
	}
	r := &Resource{Meta: Meta{Type: d.Type}, Spec: d.NewSpec()}
	specFields := make(map[string]any, len(obj))
	for k, v := range obj {
		switch k {
		case keyType:
		case keyMesh:
			if err := decodeValue(k, v, reflect.ValueOf(&r.Mesh).Elem()); err != nil {
				return nil, err
			}
		case keyName:
			if err := decodeValue(k, v, reflect.ValueOf(&r.Name).Elem()); err != nil {
				return nil, err
			}
		case keyLabels:
			if err := decodeValue(k, v, reflect.ValueOf(&r.Labels).Elem()); err != nil {
				return nil, err
			}
		case keyVersion:
			if err := decodeValue(k, v, reflect.ValueOf(&r.Version).Elem()); err != nil {
				return nil, err
			}
		case keyKRI:
			if _, ok := v.(string); !ok && v != nil {
				return nil, &DecodeError{Field: k, Reason: "must be a string"}
			}
		case keySNIs, keyStatus:
			if !d.SpecUnderSpecField && k == keyStatus {
				specFields[k] = v
			}
		case keyCreationTime, keyModificationTime:
			t, err := decodeTime(k, v)
			if err != nil {
				return nil, err
			}
			if k == keyCreationTime {
				r.CreationTime = t
			} else {
				r.ModificationTime = t
			}
		default:
			specFields[k] = v
		}
	}
	specVal := reflect.ValueOf(r.Spec).Elem()
	if d.SpecUnderSpecField {
		for _, k := range sortedKeys(specFields) {
			if k != keySpec {
				return nil, &DecodeError{Field: k, Reason: "unknown field"}
			}
		}
		if err := decodeValue(keySpec, specFields[keySpec], specVal); err != nil {
			return nil, err
		}
	} else if err := decodeObject("", specFields, specVal); err != nil {
		return nil, err
	}
	return r, nil
}

func decodeTime(field string, v any) (time.Time, error) {
	if v == nil {
		return time.Time{}, nil
	}
	s, ok := v.(string)
	if !ok {
		return time.Time{}, &DecodeError{Field: field, Reason: "must be a string"}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &DecodeError{Field: field, Reason: "must be an RFC 3339 timestamp"}
	}
	return t.UTC(), nil
}

// DecodeAll parses a multi-document YAML (or a single JSON) stream, as kumactl
// apply reads it. Empty documents are skipped. Errors name the document.
func DecodeAll(data []byte) ([]*Resource, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		tree, err := parseJSON(t)
		if err != nil {
			return nil, err
		}
		if arr, ok := tree.([]any); ok {
			out := make([]*Resource, 0, len(arr))
			for i, e := range arr {
				r, err := decodeTree(e)
				if err != nil {
					return nil, docError(i, err)
				}
				out = append(out, r)
			}
			return out, nil
		}
		r, err := decodeTree(tree)
		if err != nil {
			return nil, err
		}
		return []*Resource{r}, nil
	}
	var out []*Resource
	for i, doc := range splitYAML(data) {
		js, err := yamlToJSON(doc)
		if err != nil {
			return nil, docError(i, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		tree, err := parseJSON(js)
		if err != nil {
			return nil, docError(i, err)
		}
		r, err := decodeTree(tree)
		if err != nil {
			return nil, docError(i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func docError(i int, err error) error {
	var de *DecodeError
	if errors.As(err, &de) {
		return &DecodeError{Field: de.Field, Reason: fmt.Sprintf("document %d: %s", i+1, de.Reason)}
	}
	return fmt.Errorf("document %d: %w", i+1, err)
}

// splitYAML cuts a stream at "---" separator lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	start := 0
	for off := 0; off <= len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off
		}
		line := bytes.TrimRight(data[off:end], " \t\r")
		if bytes.Equal(line, []byte("---")) || bytes.HasPrefix(line, []byte("--- ")) {
			docs = append(docs, data[start:off])
			start = end + 1
			if start > len(data) {
				start = len(data)
			}
		}
		off = end + 1
	}
	if start < len(data) {
		docs = append(docs, data[start:])
	}
	return docs
}

// MarshalJSON renders Kuma's flat shape; creationTime and modificationTime in RFC 3339 with nanoseconds.
func (r *Resource) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.Grow(256)
	b.WriteString(`{"type":`)
	writeJSONString(&b, string(r.Type))
	if r.Mesh != "" {
		b.WriteString(`,"mesh":`)
		writeJSONString(&b, r.Mesh)
	}
	b.WriteString(`,"name":`)
	writeJSONString(&b, r.Name)
	b.WriteString(`,"creationTime":`)
	writeJSONString(&b, formatTime(r.CreationTime))
	b.WriteString(`,"modificationTime":`)
	writeJSONString(&b, formatTime(r.ModificationTime))
	if len(r.Labels) > 0 {
		lb, err := json.Marshal(r.Labels)
		if err != nil {
			return nil, fmt.Errorf("marshal labels: %w", err)
		}
		b.WriteString(`,"labels":`)
		b.Write(lb)
	}
	if id := r.KRI(); id != "" {
		b.WriteString(`,"kri":`)
		writeJSONString(&b, id)
	}
	if r.Spec != nil {
		sb, err := json.Marshal(r.Spec)
		if err != nil {
			return nil, fmt.Errorf("marshal %s spec: %w", r.Type, err)
		}
		if d, ok := DescriptorOf(r.Type); ok && d.SpecUnderSpecField {
			b.WriteString(`,"spec":`)
			b.Write(sb)
		} else if len(sb) > 2 {
			b.WriteByte(',')
			b.Write(sb[1:]) // the spec object's fields, without its '{'
			b.Truncate(b.Len() - 1)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON decodes the flat shape strictly, like Decode(b, JSON).
func (r *Resource) UnmarshalJSON(b []byte) error {
	d, err := Decode(b, JSON)
	if err != nil {
		return err
	}
	*r = *d
	return nil
}

// EncodeYAML renders the flat shape as YAML (keys sorted), as kumactl -o yaml shows it.
func EncodeYAML(r *Resource) ([]byte, error) {
	js, err := r.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(js)
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always encodes
	b.Write(enc)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// storedDoc is the internal persistence shape: it keeps Version, which the
// API rendering leaves to the ETag header.
type storedDoc struct {
	Type             Type              `json:"type"`
	Mesh             string            `json:"mesh,omitempty"`
	Name             string            `json:"name"`
	Labels           map[string]string `json:"labels,omitempty"`
	CreationTime     time.Time         `json:"creationTime"`
	ModificationTime time.Time         `json:"modificationTime"`
	Version          uint64            `json:"version"`
	Spec             json.RawMessage   `json:"spec"`
}

// EncodeStored serialises a resource for snapshots and log entries,
// including Meta.Version. Times are written in UTC with nanoseconds.
func EncodeStored(r *Resource) ([]byte, error) {
	if r == nil {
		return nil, errors.New("encode stored resource: nil")
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("encode stored %s: nil spec", r.Key())
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode stored %s: %w", r.Key(), err)
	}
	doc := storedDoc{
		Type: r.Type, Mesh: r.Mesh, Name: r.Name, Labels: r.Labels,
		CreationTime: r.CreationTime.UTC(), ModificationTime: r.ModificationTime.UTC(),
		Version: r.Version, Spec: spec,
	}
	b, err := json.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("encode stored %s: %w", r.Key(), err)
	}
	return b, nil
}

// DecodeStored is the inverse of EncodeStored. It is lenient about unknown
// fields (a snapshot may come from a newer binary that added optional fields)
// but rejects unknown types.
func DecodeStored(b []byte) (*Resource, error) {
	var doc storedDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decode stored resource: %w", err)
	}
	d, ok := DescriptorOf(doc.Type)
	if !ok {
		return nil, fmt.Errorf("decode stored resource: unknown type %q", doc.Type)
	}
	spec := d.NewSpec()
	if len(doc.Spec) > 0 && string(doc.Spec) != "null" {
		if err := json.Unmarshal(doc.Spec, spec); err != nil {
			return nil, fmt.Errorf("decode stored %s/%s: spec: %w", doc.Type, doc.Name, err)
		}
	}
	if len(doc.Labels) == 0 {
		doc.Labels = nil
	}
	return &Resource{
		Meta: Meta{
			Type: doc.Type, Mesh: doc.Mesh, Name: doc.Name, Labels: doc.Labels,
			CreationTime: doc.CreationTime.UTC(), ModificationTime: doc.ModificationTime.UTC(),
			Version: doc.Version,
		},
		Spec: spec,
	}, nil
}

// Default fills Kuma's defaults in place (servicePort = port, outbound address
// 127.0.0.1, ...). It is called by the proposer before a write enters the log,
// never inside the state machine, so a newer binary's defaults cannot make
// replicas diverge.
func Default(r *Resource) {
	if r != nil && r.Spec != nil {
		r.Spec.Default()
	}
}

// Validate checks meta (name, mesh) and spec without changing anything,
// returning every violation. It is deterministic: the state machine calls it.
func Validate(r *Resource) ValidationErrors {
	var v ValidationErrors
	if r == nil {
		v.Add("", "resource must be defined")
		return v
	}
	d, ok := DescriptorOf(r.Type)
	if !ok {
		v.Add(keyType, "unknown type %q", r.Type)
		return v
	}
	validateIdentifier(&v, keyName, r.Name)
	switch d.Scope {
	case ScopeMesh:
		if r.Mesh == "" {
			v.Add(keyMesh, "cannot be empty")
		} else {
			validateIdentifier(&v, keyMesh, r.Mesh)
		}
	case ScopeGlobal:
		if r.Mesh != "" {
			v.Add(keyMesh, "must be empty: %s is not a mesh-scoped resource", r.Type)
		}
	}
	for _, k := range sortedKeys(r.Labels) {
		p := keyLabels + "[" + strconv.Quote(k) + "]"
		if k == "" {
			v.Add(keyLabels, "label name must be non-empty")
		} else if len(k) > 317 {
			v.Add(p, "label name must be at most 317 characters")
		}
		if len(r.Labels[k]) > 63 {
			v.Add(p, "label value must be at most 63 characters")
		}
	}
	if r.Spec == nil {
		v.Add("", "spec must be defined")
		return v
	}
	if reflect.TypeOf(r.Spec) != reflect.TypeOf(d.NewSpec()) {
		v.Add(keyType, "spec %T does not belong to type %s", r.Spec, r.Type)
		return v
	}
	v = append(v, r.Spec.Validate()...)
	return v
}

func validateIdentifier(v *ValidationErrors, field, s string) {
	switch {
	case s == "":
		v.Add(field, "cannot be empty")
	case len(s) > 253:
		v.Add(field, "value length must less or equal 253")
	case !isIdentifier(s):
		v.Add(field, "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols.")
	}
}

func isIdentifier(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Clone returns a deep copy, for callers that must change a stored resource.
// Meta is copied directly (times keep their location); the spec is copied
// through its JSON encoding.
func Clone(r *Resource) *Resource {
	if r == nil {
		return nil
	}
	c := &Resource{Meta: r.Meta}
	if r.Labels != nil {
		c.Labels = make(map[string]string, len(r.Labels))
		for k, v := range r.Labels {
			c.Labels[k] = v
		}
	}
	if r.Spec == nil {
		return c
	}
	c.Spec = cloneSpec(r.Spec)
	return c
}

func cloneSpec(s Spec) Spec {
	t := reflect.TypeOf(s)
	if t.Kind() != reflect.Pointer {
		return s // value specs are copies already
	}
	n := reflect.New(t.Elem()).Interface().(Spec)
	b, err := json.Marshal(s)
	if err == nil {
		err = json.Unmarshal(b, n)
	}
	if err != nil {
		// Specs are plain data and always round-trip; keep a shallow copy rather than panic.
		reflect.ValueOf(n).Elem().Set(reflect.ValueOf(s).Elem())
	}
	return n
}
