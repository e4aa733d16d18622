package patchrec_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

func TestVersions(t *testing.T) {
	if patchrec.Version() == "" {
		t.Error("Version() is empty")
	}
	// cgo checks signatures against the header, not meanings: a new ABI version needs
	// this package reviewed, and then this number changed.
	if patchrec.ABIVersion != 2 {
		t.Errorf("ABIVersion = %d, this package was written for 2", patchrec.ABIVersion)
	}
	// The constants come from the header, so their numbers are right; these are the names
	// the library gives them, and the list must hold every status the header defines.
	names := map[patchrec.Status]string{
		patchrec.StatusOK:              "PATCHREC_OK",
		patchrec.StatusInvalidArgument: "PATCHREC_INVALID_ARGUMENT",
		patchrec.StatusNullArgument:    "PATCHREC_NULL_ARGUMENT",
		patchrec.StatusInvalidUTF8:     "PATCHREC_INVALID_UTF8",
		patchrec.StatusIO:              "PATCHREC_IO",
		patchrec.StatusFormat:          "PATCHREC_FORMAT",
		patchrec.StatusUnsupported:     "PATCHREC_UNSUPPORTED",
		patchrec.StatusUnknownItem:     "PATCHREC_UNKNOWN_ITEM",
		patchrec.StatusDuplicateItem:   "PATCHREC_DUPLICATE_ITEM",
		patchrec.StatusBufferTooSmall:  "PATCHREC_BUFFER_TOO_SMALL",
		patchrec.StatusTokenizer:       "PATCHREC_TOKENIZER",
		patchrec.StatusTensor:          "PATCHREC_TENSOR",
		patchrec.StatusPanic:           "PATCHREC_PANIC",
		patchrec.StatusStopped:         "PATCHREC_STOPPED",
		patchrec.StatusOutOfMemory:     "PATCHREC_OUT_OF_MEMORY",
		patchrec.StatusNonFinite:       "PATCHREC_NON_FINITE",
	}
	for status, name := range names {
		if got := status.String(); got != name {
			t.Errorf("Status(%d).String() = %q, want %q", uint32(status), got, name)
		}
	}
	header, err := os.ReadFile(headerPath)
	if err != nil {
		t.Fatal(err)
	}
	enum := regexp.MustCompile(`(?s)enum patchrec_status_t\b.*?\{(.*?)\};`).FindSubmatch(header)
	if enum == nil {
		t.Fatalf("no enum patchrec_status_t in %s", headerPath)
	}
	defined := regexp.MustCompile(`(PATCHREC_\w+) = (\d+),`).FindAllSubmatch(enum[1], -1)
	for _, constant := range defined {
		code, _ := strconv.Atoi(string(constant[2]))
		if names[patchrec.Status(code)] != string(constant[1]) {
			t.Errorf("%s: the header's %s = %d has no Status constant here", headerPath, constant[1], code)
		}
	}
	if len(defined) != len(names) {
		t.Errorf("the header defines %d statuses, this test lists %d", len(defined), len(names))
	}
	if got := patchrec.Status(9999).String(); got != "PATCHREC_UNKNOWN_STATUS" {
		t.Errorf("an undefined status is named %q", got)
	}
}

func TestRecommendMatchesCAPI(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	got, err := catalog.Recommend(user, &patchrec.QueryOptions{K: queryK})
	if err != nil {
		t.Fatal(err)
	}
	requireRanking(t, got, cReference(t, queryHistory, queryK), queryK)
}

// requireRanking fails t unless got is want, C's ranking, item for item with bit-equal
// scores, and holds k items, best first.
func requireRanking(t *testing.T, got, want []patchrec.Recommendation, k int) {
	t.Helper()
	if len(got) != k || len(got) != len(want) {
		t.Fatalf("got %d items, C gave %d, want %d", len(got), len(want), k)
	}
	for i := range want {
		// Bit-equal scores: the binding must pass the library's floats through untouched.
		if got[i].ItemID != want[i].ItemID || math.Float32bits(got[i].Score) != math.Float32bits(want[i].Score) {
			t.Errorf("rank %d: got %d (%v), C gave %d (%v)", i+1, got[i].ItemID, got[i].Score, want[i].ItemID, want[i].Score)
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i].Score > got[i-1].Score {
			t.Errorf("scores not best first at rank %d: %v", i+1, got)
		}
	}
}

// nil options, the zero QueryOptions (which builds a C handle and sets nothing) and C's
// k = 10 answer alike: the defaults, with the checkpoint's layout.
func TestZeroQueryOptionsAreTheDefaults(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	want := cReference(t, queryHistory, 10)
	for _, options := range []*patchrec.QueryOptions{nil, {}, {K: 10, BeamWidth: 20}} {
		top, err := catalog.Recommend(user, options)
		if err != nil {
			t.Fatalf("%+v: %v", options, err)
		}
		requireRanking(t, top, want, 10)
	}
	defaults, err := catalog.LayoutStats(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	if zero, err := catalog.LayoutStats(user, &patchrec.QueryOptions{}); err != nil || zero != defaults {
		t.Errorf("LayoutStats with the zero QueryOptions: %+v, %v; with nil %+v", zero, err, defaults)
	}
}

func TestExcludeHistory(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	top, err := catalog.Recommend(user, &patchrec.QueryOptions{K: catalog.Len(), ExcludeHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := catalog.Len() - len(queryHistory); len(top) != want {
		t.Errorf("got %d items, want the %d unseen ones", len(top), want)
	}
	seen := map[uint64]bool{}
	for _, id := range queryHistory {
		seen[id] = true
	}
	for _, r := range top {
		if seen[r.ItemID] {
			t.Errorf("history item %d recommended", r.ItemID)
		}
	}
}

func TestLayoutStats(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	options := &patchrec.QueryOptions{K: 5, Layout: &patchrec.LayoutChoice{Kind: patchrec.LayoutVanilla}}
	vanilla, err := catalog.LayoutStats(user, options)
	if err != nil {
		t.Fatal(err)
	}
	options.Layout = &patchrec.LayoutChoice{Kind: patchrec.LayoutPFTS, Param: 2}
	compressed, err := catalog.LayoutStats(user, options)
	if err != nil {
		t.Fatal(err)
	}
	if vanilla.CompressionRatio != 1 || compressed.CompressionRatio <= 1 || compressed.PromptLen >= vanilla.PromptLen {
		t.Errorf("PFT-S:2 does not compress: vanilla %+v, PFT-S:2 %+v", vanilla, compressed)
	}
}

func TestCatalog(t *testing.T) {
	catalog := newCatalog(t)
	items := catalogItems(t)
	if catalog.Len() != len(items) {
		t.Fatalf("Len() = %d, want %d", catalog.Len(), len(items))
	}
	for _, item := range items {
		if title, err := catalog.Title(item.ID); err != nil || title != item.Title {
			t.Errorf("Title(%d) = %q, %v; want %q", item.ID, title, err, item.Title)
		}
	}
	if !strings.ContainsRune(items[40].Title, 'é') {
		t.Fatalf("movies.tsv changed: item 41 was Amélie, which tests non-ASCII titles; got %q", items[40].Title)
	}
	_, err := catalog.Title(999)
	requireError(t, err, patchrec.StatusUnknownItem, "999")

	if err := catalog.Add(1000, "Brazil (1985)"); err != nil {
		t.Fatal(err)
	}
	requireError(t, catalog.Add(1000, "Brazil again"), patchrec.StatusDuplicateItem, "1000")
	requireError(t, catalog.Add(1001, "Caf\xe9 (1999)"), patchrec.StatusInvalidUTF8, "title")
	requireError(t, catalog.Add(1001, "Half\x00Title"), patchrec.StatusInvalidArgument, "NUL")
	requireError(t, catalog.Add(1001, "  "), patchrec.StatusInvalidArgument, "no visible characters")
	requireError(t, catalog.Add(1001, "\u200b\u2060"), patchrec.StatusInvalidArgument, "no visible characters")
	requireError(t, catalog.Add(1001, "Line\nBreak"), patchrec.StatusInvalidArgument, "control character")
	requireError(t, catalog.Add(1001, strings.Repeat("a", 4097)), patchrec.StatusInvalidArgument, "4096")
	requireError(t, catalog.Add(1001, strings.Repeat("x ", 1500)), patchrec.StatusInvalidArgument, "tokens")

	batch := []patchrec.Item{{ID: 1002, Title: "Ran (1985)"}, {ID: 1, Title: "Toy Story again"}}
	requireError(t, catalog.AddItems(batch), patchrec.StatusDuplicateItem, "item id 1")
	if catalog.Len() != len(items)+1 {
		t.Errorf("a failed batch changed the catalogue: Len() = %d", catalog.Len())
	}
	if err := catalog.AddItems(nil); err != nil {
		t.Errorf("an empty batch: %v", err)
	}
}

func TestUser(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, 1, 2)
	requireError(t, user.Append(catalog, 3, 999), patchrec.StatusUnknownItem, "999")
	if user.Len() != 2 {
		t.Errorf("a failed append changed the history: Len() = %d", user.Len())
	}
	watched := []time.Time{time.Unix(1_000_000, 0), {}}
	if err := user.AppendWithTimes(catalog, []uint64{3, 4}, watched); err != nil {
		t.Fatal(err)
	}
	requireError(t, user.AppendWithTimes(catalog, []uint64{5}, nil), patchrec.StatusInvalidArgument, "1 item ids but 0 times")
	if user.Len() != 4 {
		t.Errorf("Len() = %d, want 4", user.Len())
	}
	user.Clear()
	if user.Len() != 0 {
		t.Errorf("Clear left %d interactions", user.Len())
	}
	_, err := catalog.Recommend(newUser(t, catalog, 1), nil)
	if err != nil {
		t.Errorf("a one-item history: %v", err)
	}
}

// An invalid field is StatusInvalidArgument naming it, from Recommend and LayoutStats
// alike: refused in Go when C could not be given it (a negative count), by C's setter
// otherwise, with C's message.
func TestQueryOptionErrors(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	pfti := func(param int) *patchrec.LayoutChoice {
		return &patchrec.LayoutChoice{Kind: patchrec.LayoutPFTI, Param: param}
	}
	cases := []struct {
		options patchrec.QueryOptions
		field   string // the message's start: QueryOptions.<field>
		needle  string // and what it says of it
	}{
		{patchrec.QueryOptions{K: -1}, "K", "is negative (-1)"},
		{patchrec.QueryOptions{BeamWidth: -2}, "BeamWidth", "is negative (-2)"},
		{patchrec.QueryOptions{MaxItems: -3}, "MaxItems", "is negative (-3)"},
		{patchrec.QueryOptions{Layout: pfti(-4)}, "Layout.Param", "is negative (-4)"},
		{patchrec.QueryOptions{Layout: &patchrec.LayoutChoice{Kind: patchrec.LayoutPFTS}}, "Layout",
			"pft-s:0: group size L must be at least 1"},
		{patchrec.QueryOptions{Layout: &patchrec.LayoutChoice{Kind: patchrec.LayoutStreamS}}, "Layout",
			"stream-s:0: group size L must be at least 1"},
		{patchrec.QueryOptions{Layout: &patchrec.LayoutChoice{Kind: patchrec.Layout(7), Param: 1}}, "Layout",
			"layout kind 7"},
		{patchrec.QueryOptions{SessionGap: -time.Second}, "SessionGap", "is -1s: want positive whole seconds"},
		{patchrec.QueryOptions{SessionGap: 1500 * time.Millisecond}, "SessionGap", "is 1.5s: want positive whole seconds"},
		// The first invalid field is the one named, whatever the valid ones around it.
		{patchrec.QueryOptions{K: 3, BeamWidth: 5, Layout: pfti(2), MaxItems: -1, ExcludeHistory: true}, "MaxItems",
			"is negative (-1)"},
	}
	for _, c := range cases {
		options := c.options
		_, recommendErr := catalog.Recommend(user, &options)
		_, statsErr := catalog.LayoutStats(user, &options)
		for _, err := range []error{recommendErr, statsErr} {
			requireError(t, err, patchrec.StatusInvalidArgument, c.needle)
			message := err.(*patchrec.Error).Message
			rest := strings.TrimPrefix(message, "QueryOptions."+c.field)
			if rest == message || !(strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, ": ")) {
				t.Errorf("%+v: %q does not start with the field's name, QueryOptions.%s", options, message, c.field)
			}
		}
	}
	// Valid values around the invalid ones are no error: the checks are not off by one.
	valid := patchrec.QueryOptions{K: 1, BeamWidth: 1, Layout: pfti(0), MaxItems: 1, SessionGap: patchrec.NoSessionGap}
	if _, err := catalog.Recommend(user, &valid); err != nil {
		t.Errorf("%+v: %v", valid, err)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := patchrec.LoadModel("/nonexistent/patchrec-checkpoint", nil)
	requireError(t, err, patchrec.StatusIO, "/nonexistent/patchrec-checkpoint")
	_, err = patchrec.LoadModel(checkpointDir(t), &patchrec.ModelOptions{Device: "tpu"})
	requireError(t, err, patchrec.StatusInvalidArgument, "tpu")
	_, err = patchrec.LoadModel(checkpointDir(t), &patchrec.ModelOptions{Device: "cpu\xff"})
	requireError(t, err, patchrec.StatusInvalidUTF8, "device")
	_, err = patchrec.LoadModel(checkpointDir(t), &patchrec.ModelOptions{Device: "cpu"})
	if err != nil {
		t.Errorf("device cpu: %v", err)
	}
	_, err = patchrec.LoadModel(checkpointDir(t), &patchrec.ModelOptions{Quantization: "q5_k"})
	requireError(t, err, patchrec.StatusInvalidArgument, "q5_k")
}

// A model served from Q8_0 weights answers queries with scores close to the f32 model's.
func TestQuantizedModelScoresCloseToF32(t *testing.T) {
	model, err := patchrec.LoadModel(checkpointDir(t), &patchrec.ModelOptions{Quantization: "q8_0"})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, model)
	quantized := newCatalogFor(t, model)
	dense := newCatalog(t)
	options := &patchrec.QueryOptions{K: queryK}
	got, err := quantized.Recommend(newUser(t, quantized, queryHistory...), options)
	if err != nil {
		t.Fatal(err)
	}
	want, err := dense.Recommend(newUser(t, dense, queryHistory...), options)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d items, f32 gave %d", len(got), len(want))
	}
	for _, w := range want {
		for _, g := range got {
			if g.ItemID == w.ItemID && math.Abs(float64(g.Score-w.Score)) > 0.05 {
				t.Errorf("item %d: q8_0 score %v, f32 %v", w.ItemID, g.Score, w.Score)
			}
		}
	}
}

func TestEmptyCatalog(t *testing.T) {
	catalog, err := patchrec.NewCatalog(loadModel(t))
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, catalog)
	_, err = catalog.Recommend(newUser(t, catalog), nil)
	requireError(t, err, patchrec.StatusInvalidArgument, "empty")
}

func TestUseAfterClose(t *testing.T) {
	model := loadModel(t)
	catalog, err := patchrec.NewCatalog(model)
	if err != nil {
		t.Fatal(err)
	}
	if err := catalog.AddItems(catalogItems(t)); err != nil {
		t.Fatal(err)
	}
	user := newUser(t, catalog, queryHistory...)
	otherUser := newUser(t, catalog)
	options := &patchrec.QueryOptions{K: 3}

	requireCloses(t, model)
	if _, err := catalog.Recommend(user, options); err != nil {
		t.Errorf("the catalogue must outlive its model handle: %v", err)
	}
	if ranked, err := catalog.Rank(user, []uint64{1, 2}, nil); err != nil || len(ranked) != 2 {
		t.Errorf("Rank after the model handle's Close: %v, %v", ranked, err)
	}
	_, err = patchrec.NewCatalog(model)
	requireError(t, err, patchrec.StatusNullArgument, "Model used after Close")

	requireCloses(t, user)
	_, err = catalog.Recommend(user, options)
	requireError(t, err, patchrec.StatusNullArgument, "User used after Close")
	// Rank checks its handles as Recommend does, also with no candidates, for which C
	// would take NULL arrays.
	for _, candidates := range [][]uint64{{1, 2}, nil} {
		_, err = catalog.Rank(user, candidates, nil)
		requireError(t, err, patchrec.StatusNullArgument, "User used after Close")
	}
	_, err = catalog.LayoutStats(user, nil)
	requireError(t, err, patchrec.StatusNullArgument, "User used after Close")
	requireError(t, user.Append(catalog, 1), patchrec.StatusNullArgument, "User used after Close")
	if user.Len() != 0 {
		t.Error("a closed user has interactions")
	}

	requireCloses(t, catalog)
	requireError(t, catalog.Add(1000, "Brazil (1985)"), patchrec.StatusNullArgument, "Catalog used after Close")
	_, err = catalog.Title(1)
	requireError(t, err, patchrec.StatusNullArgument, "Catalog used after Close")
	requireError(t, catalog.Remove(1), patchrec.StatusNullArgument, "Catalog used after Close")
	// Also with no ids, for which C would take a NULL array.
	requireError(t, catalog.Remove(), patchrec.StatusNullArgument, "Catalog used after Close")
	requireError(t, catalog.SetTitle(1, "Toy Story 2 (1999)"), patchrec.StatusNullArgument, "Catalog used after Close")
	requireError(t, catalog.SetKVBudget(1), patchrec.StatusNullArgument, "Catalog used after Close")
	_, err = catalog.KVStats()
	requireError(t, err, patchrec.StatusNullArgument, "Catalog used after Close")
	_, err = catalog.LayoutStats(otherUser, nil)
	requireError(t, err, patchrec.StatusNullArgument, "Catalog used after Close")
	_, err = catalog.Recommend(otherUser, options)
	requireError(t, err, patchrec.StatusNullArgument, "Catalog used after Close")
	for _, candidates := range [][]uint64{{1, 2}, nil} {
		_, err = catalog.Rank(otherUser, candidates, &patchrec.RankOptions{Query: options, InputOrder: true})
		requireError(t, err, patchrec.StatusNullArgument, "Catalog used after Close")
	}
	if catalog.Len() != 0 {
		t.Error("a closed catalogue has items")
	}
}

// Every handle is an io.Closer.
var (
	_ io.Closer = (*patchrec.Model)(nil)
	_ io.Closer = (*patchrec.Catalog)(nil)
	_ io.Closer = (*patchrec.User)(nil)
)

// requireCloses fails t unless closing c, through io.Closer, returns nil, and closing it
// again does too.
func requireCloses(t *testing.T, c io.Closer) {
	t.Helper()
	for i := 1; i <= 2; i++ {
		if err := c.Close(); err != nil {
			t.Errorf("close %d of the %T: %v", i, c, err)
		}
	}
}

// Close returns nil twice, and a third time in the test's cleanup (closeAtEnd).
func TestCloseTwice(t *testing.T) {
	model := loadModel(t)
	catalog := newCatalogFor(t, model)
	user := newUser(t, catalog, 1, 2)
	for _, c := range []io.Closer{user, catalog, model} {
		requireCloses(t, c)
	}
}

func TestErrorWrapsAndFormats(t *testing.T) {
	catalog := newCatalog(t)
	err := fmt.Errorf("loading history: %w", newUser(t, catalog).Append(catalog, 999))
	var failure *patchrec.Error
	if !errors.As(err, &failure) || failure.Status != patchrec.StatusUnknownItem {
		t.Fatalf("errors.As on a wrapped error: %v", err)
	}
	if !strings.HasPrefix(failure.Error(), "patchrec: PATCHREC_UNKNOWN_ITEM: ") {
		t.Errorf("Error() = %q", failure.Error())
	}
}

// A user keeps its prompt's KV between queries; after each append its answer must equal a
// fresh user's with the same history (which has nothing cached).
func TestStreamLayoutCachedQueriesEqualFreshOnes(t *testing.T) {
	catalog := newCatalog(t)
	options := &patchrec.QueryOptions{K: queryK, Layout: &patchrec.LayoutChoice{Kind: patchrec.LayoutStreamS, Param: 3}}
	user := newUser(t, catalog)
	for i, id := range queryHistory {
		if err := user.Append(catalog, id); err != nil {
			t.Fatal(err)
		}
		cached, err := catalog.Recommend(user, options)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := catalog.Recommend(newUser(t, catalog, queryHistory[:i+1]...), options)
		if err != nil {
			t.Fatal(err)
		}
		for r := range fresh {
			if cached[r].ItemID != fresh[r].ItemID || math.Abs(float64(cached[r].Score-fresh[r].Score)) > 1e-4 {
				t.Fatalf("after %d items, rank %d: cached %v, fresh %v", i+1, r+1, cached[r], fresh[r])
			}
		}
	}
}

// visitTimes are times for queryHistory that make visits of two items each: a minute
// apart within a visit, a day between visits.
func visitTimes() []time.Time {
	start := time.Unix(1_700_000_000, 0)
	times := make([]time.Time, len(queryHistory))
	for i := range times {
		times[i] = start.Add(time.Duration(i/2)*24*time.Hour + time.Duration(i%2)*time.Minute)
	}
	return times
}

// timedUser makes a user with the first n items of queryHistory at visitTimes, closed
// when the test ends.
func timedUser(t *testing.T, catalog *patchrec.Catalog, n int) *patchrec.User {
	user := newUser(t, catalog)
	if err := user.AppendWithTimes(catalog, queryHistory[:n], visitTimes()[:n]); err != nil {
		t.Fatal(err)
	}
	return user
}

// layoutStats is catalog.LayoutStats for the whole timed history, failing t on error.
func layoutStats(t *testing.T, catalog *patchrec.Catalog, options *patchrec.QueryOptions) patchrec.LayoutStats {
	t.Helper()
	stats, err := catalog.LayoutStats(timedUser(t, catalog, len(queryHistory)), options)
	if err != nil {
		t.Fatalf("%+v: %v", options, err)
	}
	return stats
}

// A session gap groups a timestamped history by visit (two items each here): the prompt
// differs from the counted sessions', a cached user still answers as a fresh one, and a
// gap with another layout, a negative or a fractional gap are invalid arguments.
func TestSessionGapGroupsByVisit(t *testing.T) {
	catalog := newCatalog(t)
	times := visitTimes()
	streamS4 := &patchrec.LayoutChoice{Kind: patchrec.LayoutStreamS, Param: 4}
	counted := layoutStats(t, catalog, &patchrec.QueryOptions{K: queryK, Layout: streamS4})
	options := &patchrec.QueryOptions{K: queryK, Layout: streamS4, SessionGap: time.Hour}
	// Counted: 4 item patches and 4 titles; by visit: 2 sessions, 2 item patches, 2 titles.
	if visits := layoutStats(t, catalog, options); visits.PromptLen >= counted.PromptLen || visits.CompressionRatio <= counted.CompressionRatio {
		t.Fatalf("by visit %+v, counted %+v", visits, counted)
	}
	user := newUser(t, catalog)
	for i, id := range queryHistory {
		if err := user.AppendWithTimes(catalog, []uint64{id}, times[i:i+1]); err != nil {
			t.Fatal(err)
		}
		cached, err := catalog.Recommend(user, options)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := catalog.Recommend(timedUser(t, catalog, i+1), options)
		if err != nil {
			t.Fatal(err)
		}
		for r := range fresh {
			if cached[r].ItemID != fresh[r].ItemID || math.Abs(float64(cached[r].Score-fresh[r].Score)) > 1e-4 {
				t.Fatalf("after %d items, rank %d: cached %v, fresh %v", i+1, r+1, cached[r], fresh[r])
			}
		}
	}
	// This checkpoint sets no gap, so turning it off and keeping the checkpoint's agree.
	for _, gap := range []time.Duration{patchrec.NoSessionGap, 0} {
		options.SessionGap = gap
		if off := layoutStats(t, catalog, options); off != counted {
			t.Fatalf("gap %v: %+v, counted %+v", gap, off, counted)
		}
	}
	for _, gap := range []time.Duration{-time.Second, -2, 1500 * time.Millisecond, time.Nanosecond} {
		options.SessionGap = gap
		_, err := catalog.Recommend(user, options)
		requireError(t, err, patchrec.StatusInvalidArgument, "QueryOptions.SessionGap")
	}
	options.SessionGap = time.Hour
	options.Layout = &patchrec.LayoutChoice{Kind: patchrec.LayoutPFTS, Param: 4}
	_, err := catalog.Recommend(user, options)
	requireError(t, err, patchrec.StatusInvalidArgument, "stream-s")
}

// With a checkpoint whose layout is stream-s:4 with a one-hour gap, SessionGap 0 (and nil
// options) keeps that gap, NoSessionGap turns it off, and another layout drops it.
func TestSessionGapZeroKeepsTheCheckpoints(t *testing.T) {
	model, err := patchrec.LoadModel(checkpointWithLayout(t, `{"kind": "stream-s", "l": 4, "max_items": 100, "session_gap": 3600}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, model)
	catalog := newCatalogFor(t, model)
	streamS4 := &patchrec.LayoutChoice{Kind: patchrec.LayoutStreamS, Param: 4}
	visits := layoutStats(t, catalog, &patchrec.QueryOptions{Layout: streamS4, SessionGap: time.Hour})
	counted := layoutStats(t, catalog, &patchrec.QueryOptions{Layout: streamS4, SessionGap: patchrec.NoSessionGap})
	if visits.PromptLen >= counted.PromptLen {
		t.Fatalf("by visit %+v, counted %+v", visits, counted)
	}
	for _, options := range []*patchrec.QueryOptions{nil, {}, {K: queryK}, {Layout: streamS4}} {
		if got := layoutStats(t, catalog, options); got != visits {
			t.Errorf("%+v: %+v, want the checkpoint's gap %+v", options, got, visits)
		}
	}
	if got := layoutStats(t, catalog, &patchrec.QueryOptions{SessionGap: patchrec.NoSessionGap}); got != counted {
		t.Errorf("NoSessionGap: %+v, want counted sessions %+v", got, counted)
	}
	// The checkpoint's gap goes with its layout: with PFT-S, 0 is no error.
	pftS4 := &patchrec.QueryOptions{Layout: &patchrec.LayoutChoice{Kind: patchrec.LayoutPFTS, Param: 4}}
	if _, err := catalog.LayoutStats(timedUser(t, catalog, len(queryHistory)), pftS4); err != nil {
		t.Errorf("pft-s:4 with the checkpoint's gap: %v", err)
	}
	// Recommend agrees: nil options answer as the explicit gap, bit for bit.
	user := timedUser(t, catalog, len(queryHistory))
	want, err := catalog.Recommend(user, &patchrec.QueryOptions{Layout: streamS4, SessionGap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	got, err := catalog.Recommend(timedUser(t, catalog, len(queryHistory)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nil options: %v, the explicit one-hour gap: %v", got, want)
	}
}

// checkpointWithLayout copies the test checkpoint into a temporary folder with layout,
// JSON, as its patchrec.json's layout, and returns the folder.
func checkpointWithLayout(t *testing.T, layout string) string {
	dir := t.TempDir()
	entries, err := os.ReadDir(checkpointDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		data, err := os.ReadFile(filepath.Join(checkpointDir(t), entry.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if entry.Name() == "patchrec.json" {
			var meta map[string]json.RawMessage
			if err := json.Unmarshal(data, &meta); err != nil {
				t.Fatal(err)
			}
			meta["layout"] = json.RawMessage(layout)
			if data, err = json.Marshal(meta); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, entry.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Exact ranking equals a beam as wide as the catalogue, whatever beam width is set.
func TestExactRankingEqualsAFullWidthBeam(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	exact := &patchrec.QueryOptions{K: 5, BeamWidth: 1, Exact: true}
	wide := &patchrec.QueryOptions{K: 5, BeamWidth: catalog.Len()}
	got, err := catalog.Recommend(user, exact)
	if err != nil {
		t.Fatal(err)
	}
	want, err := catalog.Recommend(user, wide)
	if err != nil {
		t.Fatal(err)
	}
	for r := range want {
		if got[r].ItemID != want[r].ItemID || math.Abs(float64(got[r].Score-want[r].Score)) > 1e-4 {
			t.Errorf("rank %d: exact %v, full-width beam %v", r+1, got[r], want[r])
		}
	}
}

// A budget layout keeps the prompt within the budget and compresses less as it grows.
func TestBudgetLayoutFitsThePrompt(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	options := &patchrec.QueryOptions{K: queryK, Layout: &patchrec.LayoutChoice{Kind: patchrec.LayoutVanilla}}
	vanilla, err := catalog.LayoutStats(user, options)
	if err != nil {
		t.Fatal(err)
	}
	budget := vanilla.PromptLen - 5
	options.Layout = &patchrec.LayoutChoice{Kind: patchrec.LayoutBudget, Param: budget}
	fitted, err := catalog.LayoutStats(user, options)
	if err != nil {
		t.Fatal(err)
	}
	if fitted.PromptLen > budget || fitted.CompressionRatio <= 1 {
		t.Errorf("budget %d: %+v (vanilla %+v)", budget, fitted, vanilla)
	}
	if _, err := catalog.Recommend(user, options); err != nil {
		t.Fatal(err)
	}
}
