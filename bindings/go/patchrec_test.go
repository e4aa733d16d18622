package patchrec_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	patchrec "github.com/patchrec/patchrec/bindings/go"
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
	got, err := catalog.Recommend(user, newQueryOptions(t, queryK))
	if err != nil {
		t.Fatal(err)
	}
	want := cReference(t, queryHistory, queryK)
	if len(got) != queryK || len(got) != len(want) {
		t.Fatalf("got %d items, C gave %d, want %d", len(got), len(want), queryK)
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

func TestDefaultOptions(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	top, err := catalog.Recommend(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 10 {
		t.Errorf("default k gave %d items, want 10", len(top))
	}
}

func TestExcludeHistory(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	options := newQueryOptions(t, catalog.Len())
	if err := options.SetExcludeHistory(true); err != nil {
		t.Fatal(err)
	}
	top, err := catalog.Recommend(user, options)
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
	options := newQueryOptions(t, 5)
	if err := options.SetLayout(patchrec.LayoutVanilla, 0); err != nil {
		t.Fatal(err)
	}
	vanilla, err := catalog.LayoutStats(user, options)
	if err != nil {
		t.Fatal(err)
	}
	if err := options.SetLayout(patchrec.LayoutPFTS, 2); err != nil {
		t.Fatal(err)
	}
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

func TestQueryOptionErrors(t *testing.T) {
	options := newQueryOptions(t, 1)
	requireError(t, options.SetK(0), patchrec.StatusInvalidArgument, "k must be at least 1")
	requireError(t, options.SetK(-1), patchrec.StatusInvalidArgument, "`k` is negative")
	requireError(t, options.SetLayout(patchrec.LayoutPFTS, 0), patchrec.StatusInvalidArgument, "group size L")
	requireError(t, options.SetLayout(patchrec.Layout(7), 1), patchrec.StatusInvalidArgument, "layout kind 7")
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
	t.Cleanup(model.Close)
	quantized := newCatalogFor(t, model)
	dense := newCatalog(t)
	got, err := quantized.Recommend(newUser(t, quantized, queryHistory...), newQueryOptions(t, queryK))
	if err != nil {
		t.Fatal(err)
	}
	want, err := dense.Recommend(newUser(t, dense, queryHistory...), newQueryOptions(t, queryK))
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
	defer catalog.Close()
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
	options := newQueryOptions(t, 3)

	model.Close()
	model.Close()
	if _, err := catalog.Recommend(user, options); err != nil {
		t.Errorf("the catalogue must outlive its model handle: %v", err)
	}
	_, err = patchrec.NewCatalog(model)
	requireError(t, err, patchrec.StatusNullArgument, "Model used after Close")

	options.Close()
	_, err = catalog.Recommend(user, options)
	requireError(t, err, patchrec.StatusNullArgument, "QueryOptions used after Close")
	requireError(t, options.SetK(2), patchrec.StatusNullArgument, "QueryOptions used after Close")

	user.Close()
	_, err = catalog.Recommend(user, nil)
	requireError(t, err, patchrec.StatusNullArgument, "User used after Close")
	requireError(t, user.Append(catalog, 1), patchrec.StatusNullArgument, "User used after Close")
	if user.Len() != 0 {
		t.Error("a closed user has interactions")
	}

	catalog.Close()
	catalog.Close()
	requireError(t, catalog.Add(1000, "Brazil (1985)"), patchrec.StatusNullArgument, "Catalog used after Close")
	_, err = catalog.Title(1)
	requireError(t, err, patchrec.StatusNullArgument, "Catalog used after Close")
	_, err = catalog.LayoutStats(otherUser, nil)
	requireError(t, err, patchrec.StatusNullArgument, "Catalog used after Close")
	if catalog.Len() != 0 {
		t.Error("a closed catalogue has items")
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
	options := newQueryOptions(t, queryK)
	if err := options.SetLayout(patchrec.LayoutStreamS, 3); err != nil {
		t.Fatal(err)
	}
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

// A session gap groups a timestamped history by visit (two items each here): the prompt
// differs from the counted sessions', a cached user still answers as a fresh one, and a
// gap with another layout, a negative or a fractional gap are invalid arguments.
func TestSessionGapGroupsByVisit(t *testing.T) {
	catalog := newCatalog(t)
	start := time.Unix(1_700_000_000, 0)
	times := make([]time.Time, len(queryHistory))
	for i := range times {
		times[i] = start.Add(time.Duration(i/2)*24*time.Hour + time.Duration(i%2)*time.Minute)
	}
	timed := func(n int) *patchrec.User {
		user := newUser(t, catalog)
		if err := user.AppendWithTimes(catalog, queryHistory[:n], times[:n]); err != nil {
			t.Fatal(err)
		}
		return user
	}
	options := newQueryOptions(t, queryK)
	if err := options.SetLayout(patchrec.LayoutStreamS, 4); err != nil {
		t.Fatal(err)
	}
	stats := func() patchrec.LayoutStats {
		s, err := catalog.LayoutStats(timed(len(queryHistory)), options)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	counted := stats()
	if err := options.SetSessionGap(time.Hour); err != nil {
		t.Fatal(err)
	}
	// Counted: 4 item patches and 4 titles; by visit: 2 sessions, 2 item patches, 2 titles.
	if visits := stats(); visits.PromptLen >= counted.PromptLen || visits.CompressionRatio <= counted.CompressionRatio {
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
		fresh, err := catalog.Recommend(timed(i+1), options)
		if err != nil {
			t.Fatal(err)
		}
		for r := range fresh {
			if cached[r].ItemID != fresh[r].ItemID || math.Abs(float64(cached[r].Score-fresh[r].Score)) > 1e-4 {
				t.Fatalf("after %d items, rank %d: cached %v, fresh %v", i+1, r+1, cached[r], fresh[r])
			}
		}
	}
	if err := options.SetSessionGap(0); err != nil {
		t.Fatal(err)
	}
	if off := stats(); off != counted {
		t.Fatalf("gap 0: %+v, counted %+v", off, counted)
	}
	for _, gap := range []time.Duration{-time.Second, 1500 * time.Millisecond} {
		var failure *patchrec.Error
		if err := options.SetSessionGap(gap); !errors.As(err, &failure) || failure.Status != patchrec.StatusInvalidArgument {
			t.Errorf("SetSessionGap(%v) = %v", gap, err)
		}
	}
	if err := options.SetSessionGap(time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := options.SetLayout(patchrec.LayoutPFTS, 4); err != nil {
		t.Fatal(err)
	}
	var failure *patchrec.Error
	if _, err := catalog.Recommend(user, options); !errors.As(err, &failure) || failure.Status != patchrec.StatusInvalidArgument || !strings.Contains(failure.Message, "stream-s") {
		t.Errorf("gap with pft-s:4: %v", err)
	}
}

// Exact ranking equals a beam as wide as the catalogue, whatever beam width is set.
func TestExactRankingEqualsAFullWidthBeam(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	exact := newQueryOptions(t, 5)
	if err := exact.SetBeamWidth(1); err != nil {
		t.Fatal(err)
	}
	if err := exact.SetExact(true); err != nil {
		t.Fatal(err)
	}
	wide := newQueryOptions(t, 5)
	if err := wide.SetBeamWidth(catalog.Len()); err != nil {
		t.Fatal(err)
	}
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
	options := newQueryOptions(t, queryK)
	if err := options.SetLayout(patchrec.LayoutVanilla, 0); err != nil {
		t.Fatal(err)
	}
	vanilla, err := catalog.LayoutStats(user, options)
	if err != nil {
		t.Fatal(err)
	}
	budget := vanilla.PromptLen - 5
	if err := options.SetLayout(patchrec.LayoutBudget, budget); err != nil {
		t.Fatal(err)
	}
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
