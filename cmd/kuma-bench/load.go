package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// keySpace is how many distinct keys the load writes; later writes overwrite.
const keySpace = 10_000

// requestTimeout bounds one write of the throughput benchmark.
const requestTimeout = 5 * time.Second

// maxOpsPerLevel bounds a load level in count, whatever its duration.
const maxOpsPerLevel = 5_000_000

// target is a system under load: it writes the document of sequence number
// seq through endpoint (round robin is the caller's job).
type target interface {
	Name() string
	Endpoints() int
	Write(ctx context.Context, endpoint int, seq uint64) error
}

// levelResult is one concurrency level against one system.
type levelResult struct {
	System      string
	Concurrency int
	Elapsed     time.Duration
	OK          int
	Errors      map[string]int // by kind
	Latencies   []time.Duration
}

func (r *levelResult) errorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

func (r *levelResult) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// errorSummary lists the error kinds, most frequent first.
func (r *levelResult) errorSummary() string {
	kinds := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return r.Errors[kinds[i]] > r.Errors[kinds[j]] })
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d× %s", r.Errors[k], k))
	}
	return strings.Join(parts, "; ")
}

// runLoad runs a closed loop of concurrency workers against t for duration
// (and at most maxOps writes), spreading writes round robin over the
// endpoints. Writers stop starting writes at the deadline; in-flight writes
// finish and count.
func runLoad(ctx context.Context, t target, concurrency int, duration time.Duration, maxOps int, seqBase uint64) *levelResult {
	var (
		next     atomic.Uint64 // sequence numbers, also the op budget
		wg       sync.WaitGroup
		perLat   = make([][]time.Duration, concurrency)
		perErr   = make([]map[string]int, concurrency)
		deadline = time.Now().Add(duration)
	)
	start := time.Now()
	for w := range concurrency {
		perErr[w] = map[string]int{}
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				n := next.Add(1) - 1
				if n >= uint64(maxOps) {
					return
				}
				endpoint := int(n % uint64(t.Endpoints()))
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				t0 := time.Now()
				err := t.Write(rctx, endpoint, seqBase+n)
				lat := time.Since(t0)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted: not the system's fault
					}
					perErr[w][errorKind(err)]++
					continue
				}
				perLat[w] = append(perLat[w], lat)
			}
		})
	}
	wg.Wait()
	res := &levelResult{System: t.Name(), Concurrency: concurrency, Elapsed: time.Since(start), Errors: map[string]int{}}
	for w := range concurrency {
		res.Latencies = append(res.Latencies, perLat[w]...)
		for k, c := range perErr[w] {
			res.Errors[k] += c
		}
	}
	res.OK = len(res.Latencies)
	slices.Sort(res.Latencies)
	return res
}

// statusError is a write answered with an unexpected status.
type statusError struct {
	Status int
	Body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("status %d: %s", e.Status, e.Body)
}

// errorKind groups errors for the report: by status, or by transport failure.
func errorKind(err error) string {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("HTTP %d %s", se.Status, http.StatusText(se.Status))
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return msg
	}
}

// dataplaneDoc is the Dataplane written for sequence number seq. Every
// document has the same size: the name and the address have a fixed width.
func dataplaneDoc(seq uint64) (name string, doc []byte) {
	return namedDataplaneDoc("bench", seq)
}

// namedDataplaneDoc is dataplaneDoc with another name prefix.
func namedDataplaneDoc(prefix string, seq uint64) (name string, doc []byte) {
	k := seq % keySpace
	name = fmt.Sprintf("%s-%07d", prefix, k)
	addr := fmt.Sprintf("10.%d.%d.%d", 100+k/10000%100, 100+k/100%100, 100+k%100)
	doc = fmt.Appendf(nil, `{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":%q,`+
		`"inbound":[{"port":8080,"servicePort":8081,"tags":{"kuma.io/service":"backend","kuma.io/protocol":"http","version":"v1","zone":"bench"}}]}}`,
		name, addr)
	return name, doc
}
