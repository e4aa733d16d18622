/* One query through the C API, the reference the Go and Java bindings are compared with:
 *
 *   recommend CHECKPOINT_DIR ITEMS_TSV HISTORY K [QUERIES LAYOUT_STATS_CALLS]
 *
 * registers ITEMS_TSV (item_id<TAB>title per line), appends HISTORY (comma-separated item
 * ids, oldest first) to a new user and prints the top K as `ITEM_ID SCORE` lines, the
 * score with 9 significant digits so that it reads back as the same float. With QUERIES
 * it then times that many identical queries after 10 untimed ones, each on its own, and
 * prints the median to stderr (stdout stays the ranking); likewise LAYOUT_STATS_CALLS
 * calls of patchrec_user_layout_stats on the same inputs, after as many untimed ones: a
 * call cheap enough to show a binding's own cost per call. Exits 1 on any failure. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patchrec.h"

#define MAX_ITEMS 4096
#define MAX_HISTORY 1024
#define WARM_UP_QUERIES 10

static void fail(const char *what, patchrec_status_t status, patchrec_error_t *error) {
    fprintf(stderr, "%s: %s: %s\n", what, patchrec_status_name(status), patchrec_error_message(error));
    patchrec_error_free(error);
    exit(1);
}

/* Reads `item_id<TAB>title` lines into `ids` and `titles` (malloc'd) and returns how many. */
static size_t read_items(const char *path, uint64_t *ids, char **titles) {
    char line[1024];
    size_t n = 0;
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        perror(path);
        exit(1);
    }
    while (fgets(line, sizeof line, file) != NULL) {
        char *tab = strchr(line, '\t');
        if (tab == NULL) {
            continue;
        }
        if (n == MAX_ITEMS) {
            fprintf(stderr, "%s: more than %d items\n", path, MAX_ITEMS);
            exit(1);
        }
        line[strcspn(line, "\r\n")] = '\0';
        ids[n] = strtoull(line, NULL, 10);
        titles[n] = malloc(strlen(tab + 1) + 1);
        strcpy(titles[n], tab + 1);
        n++;
    }
    fclose(file);
    return n;
}

static size_t parse_history(char *text, uint64_t *ids) {
    size_t n = 0;
    char *id;
    for (id = strtok(text, ","); id != NULL && n < MAX_HISTORY; id = strtok(NULL, ",")) {
        ids[n++] = strtoull(id, NULL, 10);
    }
    return n;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One timed call's inputs. */
struct query {
    const patchrec_catalog_t *catalog;
    patchrec_user_t *user;
    const patchrec_query_options_t *options;
    patchrec_recommendation_t *top;
    size_t k;
};

static patchrec_status_t recommend(struct query *query, patchrec_error_t **error) {
    size_t len = 0;
    return patchrec_recommend(query->catalog, query->user, query->options, query->top, query->k, &len, error);
}

static patchrec_status_t layout_stats(struct query *query, patchrec_error_t **error) {
    size_t prompt_len = 0;
    double ratio = 0;
    return patchrec_user_layout_stats(query->user, query->catalog, query->options, &prompt_len, &ratio, error);
}

/* The median time of `repetitions` calls of `call`, each timed on its own, after `warm_up`
 * untimed ones. */
static double median_ns(patchrec_status_t (*call)(struct query *, patchrec_error_t **), struct query *query,
                        long warm_up, long repetitions) {
    double *elapsed = malloc((size_t)repetitions * sizeof *elapsed);
    double median;
    patchrec_error_t *error = NULL;
    patchrec_status_t status;
    long r;
    for (r = 0; r < warm_up + repetitions; r++) {
        double start = now_ns();
        if ((status = call(query, &error)) != PATCHREC_OK) {
            fail("timed call", status, error);
        }
        if (r >= warm_up) {
            elapsed[r - warm_up] = now_ns() - start;
        }
    }
    qsort(elapsed, (size_t)repetitions, sizeof *elapsed, compare_doubles);
    median = elapsed[repetitions / 2];
    free(elapsed);
    return median;
}

int main(int argc, char **argv) {
    static uint64_t item_ids[MAX_ITEMS], history[MAX_HISTORY];
    static char *titles[MAX_ITEMS];
    patchrec_model_t *model = NULL;
    patchrec_catalog_t *catalog = NULL;
    patchrec_user_t *user = NULL;
    patchrec_query_options_t *options = patchrec_query_options_new();
    patchrec_recommendation_t *top;
    patchrec_error_t *error = NULL;
    patchrec_status_t status;
    size_t item_count, history_len, k, len = 0, i;
    long queries = 0, layout_stats_calls = 0;

    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: %s CHECKPOINT_DIR ITEMS_TSV HISTORY K [QUERIES LAYOUT_STATS_CALLS]\n", argv[0]);
        return 2;
    }
    if (patchrec_abi_version() != PATCHREC_ABI_VERSION) {
        fprintf(stderr, "libpatchrec implements C ABI %u, this program was built for %d\n",
                patchrec_abi_version(), PATCHREC_ABI_VERSION);
        return 1;
    }
    item_count = read_items(argv[2], item_ids, titles);
    history_len = parse_history(argv[3], history);
    k = strtoul(argv[4], NULL, 10);
    if (argc == 7) {
        queries = strtol(argv[5], NULL, 10);
        layout_stats_calls = strtol(argv[6], NULL, 10);
    }

    if ((status = patchrec_model_load(argv[1], NULL, &model, &error)) != PATCHREC_OK) {
        fail("load", status, error);
    }
    if ((status = patchrec_catalog_new(model, &catalog, &error)) != PATCHREC_OK) {
        fail("catalog", status, error);
    }
    if ((status = patchrec_catalog_add_batch(catalog, item_ids, (const char *const *)titles, item_count,
                                             &error)) != PATCHREC_OK) {
        fail("register items", status, error);
    }
    if ((status = patchrec_user_new(&user, &error)) != PATCHREC_OK ||
        (status = patchrec_user_append_batch(user, catalog, history, NULL, history_len, &error)) !=
            PATCHREC_OK) {
        fail("history", status, error);
    }
    if ((status = patchrec_query_options_set_k(options, k, &error)) != PATCHREC_OK) {
        fail("k", status, error);
    }

    top = malloc(k * sizeof *top);
    if ((status = patchrec_recommend(catalog, user, options, top, k, &len, &error)) != PATCHREC_OK) {
        fail("recommend", status, error);
    }
    for (i = 0; i < len; i++) {
        printf("%llu %.9g\n", (unsigned long long)top[i].item_id, top[i].score);
    }

    if (queries > 0 && layout_stats_calls > 0) {
        struct query query;
        query.catalog = catalog;
        query.user = user;
        query.options = options;
        query.top = top;
        query.k = k;
        fprintf(stderr, "C: recommend median %.0f ns (%ld calls), layout stats median %.0f ns (%ld calls)\n",
                median_ns(recommend, &query, WARM_UP_QUERIES, queries), queries,
                median_ns(layout_stats, &query, layout_stats_calls, layout_stats_calls), layout_stats_calls);
    }

    free(top);
    for (i = 0; i < item_count; i++) {
        free(titles[i]);
    }
    patchrec_query_options_free(options);
    patchrec_user_free(user);
    patchrec_catalog_free(catalog);
    patchrec_model_free(model);
    return 0;
}
