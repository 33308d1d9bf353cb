package fsm

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

const restoreBatch = 512

// decodeResources reads n resource records from hr and stores them in st.
// Reading (and hashing) stays on this goroutine; decoding, the expensive
// part, runs on one worker per CPU; a single collector owns st. Every
// goroutine started here has returned when it returns.
func decodeResources(hr *hashingReader, n uint64, st *state) error {
	type job struct {
		first uint64
		recs  [][]byte
	}
	type done struct {
		first uint64
		res   []*resource.Resource
		err   error
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	jobs := make(chan job, workers*2)
	results := make(chan done, workers*2)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				d := done{first: j.first, res: make([]*resource.Resource, 0, len(j.recs))}
				for i, rec := range j.recs {
					r, err := activeSchema.decodeResource(rec)
					if err != nil {
						d.err = fmt.Errorf("resource %d: %w", j.first+uint64(i), err)
						break
					}
					d.res = append(d.res, r)
				}
				select {
				case results <- d:
				case <-stop:
					return
				}
			}
		}()
	}
	var collectErr error
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for d := range results {
			if collectErr != nil {
				continue
			}
			if d.err != nil {
				collectErr = d.err
				halt()
				continue
			}
			for i, r := range d.res {
				if _, dup := st.byKey[r.Key()]; dup {
					collectErr = fmt.Errorf("resource %d: duplicate key %s", d.first+uint64(i), r.Key())
					halt()
					break
				}
				st.put(r)
			}
		}
	}()

	var readErr error
	batch := job{}
read:
	for i := uint64(0); i < n; i++ {
		rec, err := hr.record(nil)
		if err != nil {
			readErr = fmt.Errorf("resource %d: %w", i, unexpectedEOF(err))
			break
		}
		batch.recs = append(batch.recs, rec)
		if len(batch.recs) == restoreBatch || i == n-1 {
			select {
			case jobs <- batch:
			case <-stop:
				break read
			}
			batch = job{first: i + 1, recs: make([][]byte, 0, restoreBatch)}
		}
	}
	close(jobs)
	wg.Wait()
	close(results)
	<-collected
	halt()
	if readErr != nil {
		return readErr
	}
	return collectErr
}
