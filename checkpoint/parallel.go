package checkpoint

import (
	"context"
	"sync"
)

// defaultConcurrency bounds the parallel requests of one call (uploads,
// downloads, stats, deletes).
const defaultConcurrency = 8

// forEach calls fn for every i in [0, n) on at most limit goroutines. The
// goroutines belong to this call: all have returned when it returns. The
// first error cancels the context passed to the other calls and is returned.
func forEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	if limit < 1 {
		limit = defaultConcurrency
	}
	limit = min(limit, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		next     int
		firstErr error
		wg       sync.WaitGroup
	)
	// take hands out the next index, or -1 once done or failed.
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || firstErr != nil {
			return -1
		}
		next++
		return next - 1
	}
	for range limit {
		wg.Go(func() {
			for i := take(); i >= 0; i = take() {
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}
