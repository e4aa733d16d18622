package patchrec_test

import (
	"sort"
	"testing"
	"time"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

// BenchmarkRecommend times the query that TestRecommendMatchesCAPI checks, one call at a
// time after 10 untimed ones, and reports the median as median-ns/op, to compare with
// bindings/reference/recommend.c on the same query (scripts/test-bindings.sh --latency).
func BenchmarkRecommend(b *testing.B) {
	catalog := newCatalog(b)
	user := newUser(b, catalog, queryHistory...)
	options := &patchrec.QueryOptions{K: queryK}
	reportMedian(b, 10, func() error {
		_, err := catalog.Recommend(user, options)
		return err
	})
}

// BenchmarkLayoutStats is BenchmarkRecommend for LayoutStats, a call cheap enough (no
// model run) to show the binding's own cost per call, which includes making the C options
// from the QueryOptions; it warms up with b.N calls, as the C and Java timings do.
func BenchmarkLayoutStats(b *testing.B) {
	catalog := newCatalog(b)
	user := newUser(b, catalog, queryHistory...)
	options := &patchrec.QueryOptions{K: queryK}
	reportMedian(b, b.N, func() error {
		_, err := catalog.LayoutStats(user, options)
		return err
	})
}

// reportMedian times b.N calls of call, each on its own, after warmUp untimed ones.
func reportMedian(b *testing.B, warmUp int, call func() error) {
	for i := 0; i < warmUp; i++ {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range elapsed {
		start := time.Now()
		err := call()
		elapsed[i] = time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	sort.Slice(elapsed, func(i, j int) bool { return elapsed[i] < elapsed[j] })
	b.ReportMetric(float64(elapsed[len(elapsed)/2].Nanoseconds()), "median-ns/op")
}
