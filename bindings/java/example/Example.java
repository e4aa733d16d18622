import io.github.patchrec.Catalog;
import io.github.patchrec.Item;
import io.github.patchrec.Model;
import io.github.patchrec.QueryOptions;
import io.github.patchrec.Recommendation;
import io.github.patchrec.User;
import java.nio.file.Path;
import java.util.List;

/**
 * Recommends two films for someone who watched Toy Story and Heat, then scores two
 * candidates as a ranking service would, with any checkpoint that `patchrec init`,
 * `patchrec train` or `patchrec convert` wrote:
 * java Example CHECKPOINT_DIR
 */
public class Example {
    public static void main(String[] args) {
        // Model and Catalog may serve many threads at once; a User belongs to one at a time.
        try (Model model = Model.load(Path.of(args[0]));
                Catalog catalog = new Catalog(model);
                User user = new User();
                QueryOptions options = new QueryOptions().k(2).excludeHistory(true)) {
            catalog.addAll(List.of(
                    new Item(1, "Toy Story (1995)"),
                    new Item(2, "Heat (1995)"),
                    new Item(3, "Fargo (1996)"),
                    new Item(4, "Amélie (2001)")));
            user.append(catalog, 1, 2);
            print(catalog, catalog.recommend(user, options));

            // A ranking service's call: score the candidates retrieval found, best first, on
            // recommend's scale. The options' k and exclusions do not apply: seen films count.
            print(catalog, catalog.rank(user, new long[] {2, 1}, options));
        }
    }

    private static void print(Catalog catalog, List<Recommendation> top) {
        for (int rank = 0; rank < top.size(); rank++) {
            Recommendation r = top.get(rank);
            System.out.printf("%d. %s (score %.3f)%n", rank + 1, catalog.title(r.itemId()), r.score());
        }
    }
}
