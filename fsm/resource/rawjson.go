package resource

import (
	"bytes"
	"encoding/json"
	"time"
)

// RawJSON holds a free-form JSON value (a backend's `conf`), kept compact so
// that it encodes the same way every time.
type RawJSON []byte

func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

func (r *RawJSON) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = nil
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	*r = buf.Bytes()
	return nil
}

// Duration is a Go duration string as Kuma's policies take it ("10s", "1m30s").
// It is kept as written; Validate checks it parses and Get reads it.
type Duration string

// Get returns the parsed duration; ok is false for a nil or malformed value.
func (d *Duration) Get() (time.Duration, bool) {
	if d == nil {
		return 0, false
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil {
		return 0, false
	}
	return v, true
}

// NewDuration is a helper for building specs in code.
func NewDuration(d time.Duration) *Duration { s := Duration(d.String()); return &s }
