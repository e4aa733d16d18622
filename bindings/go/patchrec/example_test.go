package patchrec_test

import (
	"fmt"
	"log"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

// Recommends two films for someone who watched Toy Story and Heat, then scores two
// candidates as a ranking service would, with any checkpoint that `patchrec init`,
// `patchrec train` or `patchrec convert` wrote.
func Example() {
	model, err := patchrec.LoadModel("path/to/checkpoint", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	// Model and Catalog may serve many goroutines at once.
	catalog, err := patchrec.NewCatalog(model)
	if err != nil {
		log.Fatal(err)
	}
	defer catalog.Close()
	err = catalog.AddItems([]patchrec.Item{
		{ID: 1, Title: "Toy Story (1995)"},
		{ID: 2, Title: "Heat (1995)"},
		{ID: 3, Title: "Fargo (1996)"},
		{ID: 4, Title: "Amélie (2001)"},
	})
	if err != nil {
		log.Fatal(err)
	}

	// A User belongs to one goroutine at a time.
	user, err := patchrec.NewUser()
	if err != nil {
		log.Fatal(err)
	}
	defer user.Close()
	if err := user.Append(catalog, 1, 2); err != nil {
		log.Fatal(err)
	}

	// Fields left zero keep their defaults; nil options are all defaults.
	top, err := catalog.Recommend(user, &patchrec.QueryOptions{K: 2, ExcludeHistory: true})
	if err != nil {
		log.Fatal(err)
	}
	printRanking(catalog, top)

	// A ranking service's call: score the candidates retrieval found, best first, on
	// Recommend's scale. Rank has no exclusions: seen films are scored too.
	ranked, err := catalog.Rank(user, []uint64{2, 1}, nil)
	if err != nil {
		log.Fatal(err)
	}
	printRanking(catalog, ranked)
}

func printRanking(catalog *patchrec.Catalog, top []patchrec.Recommendation) {
	for rank, r := range top {
		title, err := catalog.Title(r.ItemID)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d. %s (score %.3f)\n", rank+1, title, r.Score)
	}
}
