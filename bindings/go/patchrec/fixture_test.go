package patchrec_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

// The catalogue the test checkpoint's tokenizer was trained on: scripts/test-bindings.sh
// makes the checkpoint with `patchrec init --items examples/cpp/movies.tsv`.
const itemsPath = "../../../examples/cpp/movies.tsv"

// headerPath is this source tree's C header, which scripts/install.sh installs for cgo.
const headerPath = "../../../include/patchrec.h"

// The query compared with the C API, and timed by BenchmarkRecommend;
// scripts/test-bindings.sh gives the C reference the same one for the latency numbers.
var (
	queryHistory = []uint64{1, 5, 9, 13, 21, 34, 41, 55}
	queryK       = 10
)

// checkpointDir is the tiny model the tests run, from PATCHREC_TEST_CHECKPOINT. Without
// one the tests fail rather than skip, so a misconfigured CI run cannot pass empty.
func checkpointDir(t testing.TB) string {
	dir := os.Getenv("PATCHREC_TEST_CHECKPOINT")
	if dir == "" {
		t.Fatal("PATCHREC_TEST_CHECKPOINT is not set; scripts/test-bindings.sh makes a tiny checkpoint and sets it")
	}
	return dir
}

// catalogItems reads movies.tsv: item_id<TAB>title per line.
func catalogItems(t testing.TB) []patchrec.Item {
	file, err := os.Open(itemsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var items []patchrec.Item
	lines := bufio.NewScanner(file)
	for lines.Scan() {
		id, title, found := strings.Cut(lines.Text(), "\t")
		if !found {
			continue
		}
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", itemsPath, err)
		}
		items = append(items, patchrec.Item{ID: n, Title: title})
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	return items
}

// loadModel loads the test checkpoint, closed when the test ends.
func loadModel(t testing.TB) *patchrec.Model {
	model, err := patchrec.LoadModel(checkpointDir(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, model)
	return model
}

// newCatalog registers movies.tsv with a fresh model, both closed when the test ends.
func newCatalog(t testing.TB) *patchrec.Catalog {
	return newCatalogFor(t, loadModel(t))
}

// newCatalogFor registers the test catalogue for model, closed when the test ends.
func newCatalogFor(t testing.TB, model *patchrec.Model) *patchrec.Catalog {
	catalog, err := patchrec.NewCatalog(model)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, catalog)
	if err := catalog.AddItems(catalogItems(t)); err != nil {
		t.Fatal(err)
	}
	return catalog
}

// newUser makes a user with history, closed when the test ends.
func newUser(t testing.TB, catalog *patchrec.Catalog, history ...uint64) *patchrec.User {
	user, err := patchrec.NewUser()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, user)
	if err := user.Append(catalog, history...); err != nil {
		t.Fatal(err)
	}
	return user
}

// closeAtEnd closes c when the test ends; Close must return nil.
func closeAtEnd(t testing.TB, c io.Closer) {
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the %T: %v", c, err)
		}
	})
}

// cReference runs bindings/reference/recommend.c (built by scripts/test-bindings.sh, its
// path in PATCHREC_TEST_C_REFERENCE) on the test checkpoint and returns its ranking.
func cReference(t *testing.T, history []uint64, k int) []patchrec.Recommendation {
	program := os.Getenv("PATCHREC_TEST_C_REFERENCE")
	if program == "" {
		t.Fatal("PATCHREC_TEST_C_REFERENCE is not set; scripts/test-bindings.sh builds bindings/reference/recommend.c and sets it")
	}
	ids := make([]string, len(history))
	for i, id := range history {
		ids[i] = strconv.FormatUint(id, 10)
	}
	output, err := exec.Command(program, checkpointDir(t), itemsPath, strings.Join(ids, ","), strconv.Itoa(k)).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("%s: %v\n%s", program, err, exit.Stderr)
	} else if err != nil {
		t.Fatal(err)
	}
	if len(bytes.TrimSpace(output)) == 0 {
		t.Fatalf("%s printed nothing", program)
	}
	var ranking []patchrec.Recommendation
	for _, line := range strings.Split(strings.TrimSpace(string(output)), "\n") {
		id, score, _ := strings.Cut(line, " ")
		itemID, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			t.Fatalf("C reference line %q: %v", line, err)
		}
		value, err := strconv.ParseFloat(score, 32)
		if err != nil {
			t.Fatalf("C reference line %q: %v", line, err)
		}
		ranking = append(ranking, patchrec.Recommendation{ItemID: itemID, Score: float32(value)})
	}
	return ranking
}

// requireError fails t unless err is a *patchrec.Error with status want and a message
// containing needle.
func requireError(t *testing.T, err error, want patchrec.Status, needle string) {
	t.Helper()
	var failure *patchrec.Error
	if !errors.As(err, &failure) {
		t.Fatalf("got error %v, want a *patchrec.Error with %v", err, want)
	}
	if failure.Status != want || !strings.Contains(failure.Message, needle) {
		t.Fatalf("got %v %q, want %v with %q", failure.Status, failure.Message, want, needle)
	}
}
