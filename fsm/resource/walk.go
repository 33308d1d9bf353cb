package resource

// A strict, reflective decoder from a generic JSON tree (decoded with
// UseNumber) into the typed spec structs. encoding/json alone reports neither
// the full path of an unknown field nor array indices; this walker does both.

import (
	"encoding/json"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	rawJSONType = reflect.TypeFor[RawJSON]()
	timeType    = reflect.TypeFor[time.Time]()
)

// fieldTable maps JSON names to struct field indexes.
type fieldTable map[string]int

var fieldTables sync.Map // reflect.Type -> fieldTable

func fieldsOf(t reflect.Type) fieldTable {
	if ft, ok := fieldTables.Load(t); ok {
		return ft.(fieldTable)
	}
	ft := fieldTable{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft[name] = i
	}
	fieldTables.Store(t, ft)
	return ft
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func typeErr(path, reason string) error { return &DecodeError{Field: path, Reason: reason} }

// decodeObject decodes the keys of obj into the struct rv (addressable).
func decodeObject(path string, obj map[string]any, rv reflect.Value) error {
	ft := fieldsOf(rv.Type())
	for _, k := range sortedKeys(obj) {
		i, ok := ft[k]
		if !ok {
			return &DecodeError{Field: joinPath(path, k), Reason: "unknown field"}
		}
		if err := decodeValue(joinPath(path, k), obj[k], rv.Field(i)); err != nil {
			return err
		}
	}
	return nil
}

// decodeValue stores v (a value produced by encoding/json with UseNumber) in rv.
// JSON null leaves the zero value, as protobuf JSON does.
func decodeValue(path string, v any, rv reflect.Value) error {
	t := rv.Type()
	if t == rawJSONType {
		if v == nil {
			rv.SetBytes(nil)
			return nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return typeErr(path, "cannot be encoded: "+err.Error())
		}
		rv.SetBytes(b)
		return nil
	}
	if v == nil {
		rv.Set(reflect.Zero(t))
		return nil
	}
	if t == timeType {
		str, ok := v.(string)
		if !ok {
			return typeErr(path, "must be an RFC 3339 time string")
		}
		ts, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			return typeErr(path, "must be an RFC 3339 time: "+err.Error())
		}
		rv.Set(reflect.ValueOf(ts))
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := decodeValue(path, v, p.Elem()); err != nil {
			return err
		}
		rv.Set(p)
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return typeErr(path, "must be an object")
		}
		return decodeObject(path, obj, rv)
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return typeErr(path, "must be an object")
		}
		if len(obj) == 0 {
			rv.Set(reflect.Zero(t))
			return nil
		}
		m := reflect.MakeMapWithSize(t, len(obj))
		for _, k := range sortedKeys(obj) {
			e := reflect.New(t.Elem()).Elem()
			if err := decodeValue(path+"["+strconv.Quote(k)+"]", obj[k], e); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
		rv.Set(m)
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return typeErr(path, "must be an array")
		}
		if len(arr) == 0 {
			rv.Set(reflect.Zero(t))
			return nil
		}
		s := reflect.MakeSlice(t, len(arr), len(arr))
		for i, e := range arr {
			if err := decodeValue(path+"["+strconv.Itoa(i)+"]", e, s.Index(i)); err != nil {
				return err
			}
		}
		rv.Set(s)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return typeErr(path, "must be a string")
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return typeErr(path, "must be a boolean")
		}
		rv.SetBool(b)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return typeErr(path, "must be a number")
		}
		u, err := strconv.ParseUint(string(n), 10, t.Bits())
		if err != nil {
			return typeErr(path, intReason(string(n), 0, math.MaxUint64>>(64-t.Bits()), false))
		}
		rv.SetUint(u)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return typeErr(path, "must be a number")
		}
		i, err := strconv.ParseInt(string(n), 10, t.Bits())
		if err != nil {
			return typeErr(path, intReason(string(n), 0, 0, true))
		}
		rv.SetInt(i)
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return typeErr(path, "must be a number")
		}
		f, err := strconv.ParseFloat(string(n), t.Bits())
		if err != nil {
			return typeErr(path, "number is out of range")
		}
		rv.SetFloat(f)
	default:
		return typeErr(path, "unsupported field type "+t.String())
	}
	return nil
}

func intReason(n string, _ uint64, maxU uint64, signed bool) string {
	if strings.ContainsAny(n, ".eE") {
		if f, err := strconv.ParseFloat(n, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			// 1e3 or 80.0: integral, but encoding/json would reject it too; say why.
			return "must be an integer without fraction or exponent"
		}
		return "must be an integer"
	}
	if !signed && strings.HasPrefix(n, "-") {
		return "must not be negative"
	}
	if signed {
		return "integer is out of range"
	}
	return "must be at most " + strconv.FormatUint(maxU, 10)
}
