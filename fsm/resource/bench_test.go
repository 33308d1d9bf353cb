package resource

import (
	"testing"
	"time"
)

func BenchmarkDecodeStoredDataplane(b *testing.B) {
	r, err := Decode([]byte(dpYAML), YAML)
	if err != nil {
		b.Fatal(err)
	}
	r.CreationTime = time.Unix(1700000000, 5).UTC()
	r.ModificationTime = r.CreationTime
	r.Version = 12345
	data, err := EncodeStored(r)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := DecodeStored(data); err != nil {
			b.Fatal(err)
		}
	}
}
