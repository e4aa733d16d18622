package patchrec_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

// Many goroutines query one model and catalogue at once, sharing one *QueryOptions, each
// with its own User, and get exactly what the same queries give one at a time.
func TestConcurrentQueries(t *testing.T) {
	const goroutines, queriesEach = 8, 3
	catalog := newCatalog(t)
	options := &patchrec.QueryOptions{K: 5}
	histories := make([][]uint64, goroutines)
	want := make([][]patchrec.Recommendation, goroutines)
	for g := range histories {
		histories[g] = []uint64{uint64(g + 1), uint64(g + 11), uint64(g + 21), uint64(g + 31)}
		top, err := catalog.Recommend(newUser(t, catalog, histories[g]...), options)
		if err != nil {
			t.Fatal(err)
		}
		want[g] = top
	}

	failures := make(chan error, goroutines*queriesEach)
	var wg sync.WaitGroup
	for g := range histories {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			user, err := userWith(catalog, histories[g])
			if err != nil {
				failures <- err
				return
			}
			defer user.Close()
			for q := 0; q < queriesEach; q++ {
				top, err := catalog.Recommend(user, options)
				if err != nil {
					failures <- err
				} else if !reflect.DeepEqual(top, want[g]) {
					failures <- fmt.Errorf("goroutine %d query %d: got %v, alone %v", g, q, top, want[g])
				}
			}
		}(g)
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
}

// Closing a catalogue while goroutines query it waits for the queries in flight; later
// ones fail cleanly instead of reaching freed memory.
func TestCloseWhileQuerying(t *testing.T) {
	const goroutines = 4
	catalog := newCatalog(t)
	options := &patchrec.QueryOptions{K: 3}
	started := make(chan struct{}, goroutines)
	failures := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user, err := patchrec.NewUser()
			if err != nil {
				failures <- err
				return
			}
			defer user.Close()
			if err := user.Append(catalog, queryHistory...); err != nil {
				failures <- err
				return
			}
			started <- struct{}{}
			for {
				_, err := catalog.Recommend(user, options)
				var failure *patchrec.Error
				if errors.As(err, &failure) && failure.Status == patchrec.StatusNullArgument {
					return
				}
				if err != nil {
					failures <- err
					return
				}
			}
		}()
	}
	for g := 0; g < goroutines; g++ {
		<-started
	}
	if err := catalog.Close(); err != nil {
		t.Errorf("closing the catalogue while it is queried: %v", err)
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
}

// With batching on, concurrent queries share forward passes and still answer as alone.
func TestBatchedConcurrentQueries(t *testing.T) {
	const goroutines = 6
	catalog := newCatalog(t)
	options := &patchrec.QueryOptions{K: 5}
	histories := make([][]uint64, goroutines)
	want := make([][]patchrec.Recommendation, goroutines)
	for g := range histories {
		histories[g] = []uint64{uint64(g + 2), uint64(g + 12), uint64(g + 22)}
		top, err := catalog.Recommend(newUser(t, catalog, histories[g]...), options)
		if err != nil {
			t.Fatal(err)
		}
		want[g] = top
	}
	if err := catalog.SetBatching(8, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got := make([][]patchrec.Recommendation, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range histories {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			user, err := userWith(catalog, histories[g])
			if err != nil {
				errs[g] = err
				return
			}
			defer user.Close()
			got[g], errs[g] = catalog.Recommend(user, options)
		}(g)
	}
	wg.Wait()
	for g := range histories {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		for r := range want[g] {
			if got[g][r].ItemID != want[g][r].ItemID || math.Abs(float64(got[g][r].Score-want[g][r].Score)) > 1e-4 {
				t.Errorf("goroutine %d rank %d: batched %v, alone %v", g, r+1, got[g][r], want[g][r])
			}
		}
	}
	if err := catalog.SetBatching(0, 0); err != nil {
		t.Fatal(err)
	}
	requireError(t, catalog.SetBatching(-1, 0), patchrec.StatusInvalidArgument, "maxBatch")
	requireError(t, catalog.SetBatching(1, -time.Microsecond), patchrec.StatusInvalidArgument, "maxWait")
	requireError(t, catalog.SetBatching(1025, 0), patchrec.StatusInvalidArgument, "1025")
	requireError(t, catalog.SetBatching(8, 2*time.Second), patchrec.StatusInvalidArgument, "2000000")
	if err := catalog.SetBatching(1024, time.Second); err != nil {
		t.Errorf("the largest batching: %v", err)
	}
	if err := catalog.SetBatching(0, 0); err != nil {
		t.Fatal(err)
	}
}

// userWith makes a user with history from a goroutine, where t.Fatal cannot be called; the
// caller closes it.
func userWith(catalog *patchrec.Catalog, history []uint64) (*patchrec.User, error) {
	user, err := patchrec.NewUser()
	if err != nil {
		return nil, err
	}
	if err := user.Append(catalog, history...); err != nil {
		user.Close()
		return nil, err
	}
	return user, nil
}
