package envoy

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// TestAppendTCPProxy holds the hand-made encoding to protobuf's own,
// including multi-byte lengths and varints.
func TestAppendTCPProxy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	durations := []time.Duration{0, time.Nanosecond, 500 * time.Millisecond, time.Second, time.Hour, 1<<63 - 1}
	for i := range 2000 {
		tp := &tcpProxy{
			statPrefix: strings.Repeat("s", rng.IntN(300)),
			idle:       durations[rng.IntN(len(durations))],
		}
		for range rng.IntN(5) {
			tp.dests = append(tp.dests, destination{
				ref:    EndpointRef{Cluster: strings.Repeat("c", rng.IntN(200))},
				weight: []uint32{0, 1, 127, 128, 1 << 20, 1<<32 - 1}[rng.IntN(6)],
			})
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(tp.message())
		if err != nil {
			t.Fatal(err)
		}
		if got := appendTCPProxy([]byte("prefix"), tp); !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("case %d: %+v\n got %x\nwant %x", i, tp, got[len("prefix"):], want)
		}
	}
}
