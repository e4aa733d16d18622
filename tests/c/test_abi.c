/* The C ABI from C99: happy path, every error status a caller meets, and the version
 * checks. Run by tests/abi.rs as `test_abi CHECKPOINT_DIR`, compiled with
 * -DPATCHREC_EXPECTED_VERSION="x.y.z" (the Cargo.toml version). */
#include <stdio.h>
#include <string.h>

#include "patchrec.h"

#ifndef PATCHREC_EXPECTED_VERSION
#error "compile with -DPATCHREC_EXPECTED_VERSION='\"x.y.z\"'"
#endif

static const uint64_t ITEM_IDS[] = {1, 2, 3, 4, 5, 6, 7, 8};
static const char *const ITEM_TITLES[] = {
    "Toy Story (1995)",  "Heat (1995)",  "Fargo (1996)",         "Am\xc3\xa9lie (2001)",
    "The Matrix (1999)", "Alien (1979)", "Jurassic Park (1993)", "Groundhog Day (1993)",
};
enum { ITEM_COUNT = sizeof ITEM_IDS / sizeof ITEM_IDS[0] };

static int passed;
static int failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAIL: %s\n", what);
    }
}

/* A failed call: status `want`, and in `*slot` an error object of the same status whose
 * message is non-empty and contains `needle`. Frees the error and resets `*slot`. The
 * error is passed by address because C leaves the order of argument evaluation open:
 * `check_failure(..., f(&error), ..., error, ...)` may read `error` before `f` runs. */
static void check_failure(const char *what, patchrec_status_t got, patchrec_status_t want,
                          patchrec_error_t **slot, const char *needle) {
    patchrec_error_t *error = *slot;
    const char *message = patchrec_error_message(error);
    if (got == want && error != NULL && patchrec_error_status(error) == want && message[0] != '\0' &&
        strstr(message, needle) != NULL) {
        passed++;
        printf("ok: %s: %s: %s\n", what, patchrec_status_name(got), message);
    } else {
        failed++;
        fprintf(stderr, "FAIL: %s: got %s (\"%s\"), want %s with \"%s\"\n", what, patchrec_status_name(got),
                message, patchrec_status_name(want), needle);
    }
    patchrec_error_free(error);
    *slot = NULL;
}

/* A call that must succeed and leave `*slot` NULL; on failure reports and frees the error. */
static int check_ok(const char *what, patchrec_status_t got, patchrec_error_t **slot) {
    check(got == PATCHREC_OK && *slot == NULL, what);
    if (got != PATCHREC_OK) {
        fprintf(stderr, "  %s: %s\n", patchrec_status_name(got), patchrec_error_message(*slot));
        patchrec_error_free(*slot);
        *slot = NULL;
    }
    return got == PATCHREC_OK;
}

static void test_versions(void) {
    char parts[64];
    const char *version = patchrec_version();
    size_t n = (size_t)snprintf(parts, sizeof parts, "%d.%d.%d", PATCHREC_VERSION_MAJOR, PATCHREC_VERSION_MINOR,
                                PATCHREC_VERSION_PATCH);
    check(strcmp(version, PATCHREC_EXPECTED_VERSION) == 0, "patchrec_version() is the Cargo.toml version");
    /* A pre-release or build suffix ("-rc.1", "+build") is not in the numeric macros. */
    check(strncmp(version, parts, n) == 0 && (version[n] == '\0' || version[n] == '-' || version[n] == '+'),
          "PATCHREC_VERSION_MAJOR/MINOR/PATCH match patchrec_version()");
    check(patchrec_abi_version() == PATCHREC_ABI_VERSION, "patchrec_abi_version() matches the header");
    check(strcmp(patchrec_status_name(PATCHREC_UNKNOWN_ITEM), "PATCHREC_UNKNOWN_ITEM") == 0,
          "patchrec_status_name names a status");
    check(strcmp(patchrec_status_name(9999), "PATCHREC_UNKNOWN_STATUS") == 0,
          "patchrec_status_name accepts any number");
    check(patchrec_error_status(NULL) == PATCHREC_OK && strcmp(patchrec_error_message(NULL), "") == 0,
          "a NULL error means success");
}

static void test_missing_checkpoint(void) {
    static char not_a_model;
    patchrec_model_t *model = (patchrec_model_t *)(void *)&not_a_model;
    patchrec_error_t *error = NULL;
    patchrec_status_t status = patchrec_model_load("/nonexistent/patchrec-ckpt", NULL, &model, &error);
    check_failure("missing checkpoint directory", status, PATCHREC_IO, &error, "/nonexistent/patchrec-ckpt");
    check(model == NULL, "a failed load sets *out to NULL");
}

static void test_null_arguments(const char *dir) {
    patchrec_model_t *model = NULL;
    patchrec_error_t *error = NULL;
    check_failure("NULL checkpoint_dir", patchrec_model_load(NULL, NULL, &model, &error),
                  PATCHREC_NULL_ARGUMENT, &error, "checkpoint_dir");
    check_failure("NULL out", patchrec_model_load(dir, NULL, NULL, &error), PATCHREC_NULL_ARGUMENT, &error,
                  "out");
    check_failure("NULL catalog handle", patchrec_catalog_add(NULL, 1, "Heat (1995)", &error),
                  PATCHREC_NULL_ARGUMENT, &error, "catalog");
    check_failure("NULL len", patchrec_recommend(NULL, NULL, NULL, NULL, 0, NULL, &error),
                  PATCHREC_NULL_ARGUMENT, &error, "len");
    check(patchrec_catalog_add(NULL, 1, "Heat (1995)", NULL) == PATCHREC_NULL_ARGUMENT,
          "a NULL error out-param still gets the status");
    check(patchrec_catalog_len(NULL) == 0 && patchrec_user_len(NULL) == 0, "lengths of NULL are 0");
    patchrec_user_clear(NULL);
    patchrec_model_free(NULL);
    patchrec_catalog_free(NULL);
    patchrec_user_free(NULL);
    patchrec_query_options_free(NULL);
    patchrec_model_options_free(NULL);
    patchrec_error_free(NULL);
}

static void test_options(const char *dir) {
    patchrec_query_options_t *options = patchrec_query_options_new();
    patchrec_model_options_t *model_options = patchrec_model_options_new();
    patchrec_model_t *model = NULL;
    patchrec_error_t *error = NULL;
    check_failure("k = 0", patchrec_query_options_set_k(options, 0, &error), PATCHREC_INVALID_ARGUMENT,
                  &error, "k must be at least 1");
    check_failure("PFT-S with L = 0",
                  patchrec_query_options_set_layout(options, PATCHREC_LAYOUT_PFT_S, 0, &error),
                  PATCHREC_INVALID_ARGUMENT, &error, "group size L");
    check_failure("unknown layout kind", patchrec_query_options_set_layout(options, 7, 1, &error),
                  PATCHREC_INVALID_ARGUMENT, &error, "layout kind 7");
    check_failure("invalid UTF-8 device", patchrec_model_options_set_device(model_options, "cpu\xff", &error),
                  PATCHREC_INVALID_UTF8, &error, "device");
    check_ok("set device", patchrec_model_options_set_device(model_options, "tpu", &error), &error);
    check_failure("unknown device", patchrec_model_load(dir, model_options, &model, &error),
                  PATCHREC_INVALID_ARGUMENT, &error, "tpu");
    check(model == NULL, "a failed load leaves no model");
    patchrec_model_options_free(model_options);
    patchrec_query_options_free(options);
}

/* A catalogue of ITEM_IDS; the model handle is freed at once, which the catalogue outlives. */
static patchrec_catalog_t *make_catalog(const char *dir) {
    static char not_an_error;
    patchrec_model_t *model = NULL;
    patchrec_catalog_t *catalog = NULL;
    patchrec_error_t *error = (patchrec_error_t *)(void *)&not_an_error;
    if (!check_ok("load the checkpoint", patchrec_model_load(dir, NULL, &model, &error), &error)) {
        return NULL;
    }
    check_ok("new catalogue", patchrec_catalog_new(model, &catalog, &error), &error);
    patchrec_model_free(model);
    if (catalog != NULL) {
        check_ok("add a batch",
                 patchrec_catalog_add_batch(catalog, ITEM_IDS, ITEM_TITLES, ITEM_COUNT, &error), &error);
    }
    return catalog;
}

static void test_catalog(const patchrec_catalog_t *catalog) {
    patchrec_error_t *error = NULL;
    const uint64_t batch_ids[] = {100, 101, 3};
    const char *const batch_titles[] = {"Brazil (1985)", "Ran (1985)", "Fargo again"};
    const char *const null_titles[] = {"Brazil (1985)", NULL, "Ran (1985)"};
    char title[64];
    size_t len = 0;

    check(patchrec_catalog_len(catalog) == ITEM_COUNT, "the catalogue holds the batch");
    check_failure("duplicate id", patchrec_catalog_add(catalog, 2, "Heat again", &error),
                  PATCHREC_DUPLICATE_ITEM, &error, "item id 2");
    check_failure("invalid UTF-8 title", patchrec_catalog_add(catalog, 50, "Caf\xe9 (1999)", &error),
                  PATCHREC_INVALID_UTF8, &error, "title");
    check_failure("empty title", patchrec_catalog_add(catalog, 50, "  ", &error), PATCHREC_INVALID_ARGUMENT,
                  &error, "no visible characters");
    check_failure("zero-width title", patchrec_catalog_add(catalog, 50, "\xe2\x80\x8b\xe2\x80\x8d", &error),
                  PATCHREC_INVALID_ARGUMENT, &error, "no visible characters");
    check_failure("control characters", patchrec_catalog_add(catalog, 50, "Heat\n(1995)", &error),
                  PATCHREC_INVALID_ARGUMENT, &error, "U+000A");
    check_failure("batch with a duplicate",
                  patchrec_catalog_add_batch(catalog, batch_ids, batch_titles, 3, &error),
                  PATCHREC_DUPLICATE_ITEM, &error, "item id 3");
    check_failure("batch with a NULL title",
                  patchrec_catalog_add_batch(catalog, batch_ids, null_titles, 3, &error),
                  PATCHREC_NULL_ARGUMENT, &error, "titles[1]");
    check(patchrec_catalog_len(catalog) == ITEM_COUNT, "a failed batch adds nothing");

    check_failure("title length query", patchrec_catalog_title(catalog, 4, NULL, 0, &len, &error),
                  PATCHREC_BUFFER_TOO_SMALL, &error, "item 4");
    check(len == strlen(ITEM_TITLES[3]), "BUFFER_TOO_SMALL reports the title's length in bytes");
    check_failure("title buffer without room for NUL",
                  patchrec_catalog_title(catalog, 4, title, len, &len, &error), PATCHREC_BUFFER_TOO_SMALL,
                  &error, "NUL");
    if (check_ok("title", patchrec_catalog_title(catalog, 4, title, sizeof title, &len, &error), &error)) {
        check(strcmp(title, ITEM_TITLES[3]) == 0 && len == strlen(title), "title round trip");
    }
    check_failure("title of an unknown id",
                  patchrec_catalog_title(catalog, 999, title, sizeof title, &len, &error),
                  PATCHREC_UNKNOWN_ITEM, &error, "999");
}

static void test_user(const patchrec_catalog_t *catalog) {
    patchrec_user_t *user = NULL;
    patchrec_error_t *error = NULL;
    const uint64_t ids[] = {1, 2, 999};
    const int64_t timestamps[] = {1000, PATCHREC_NO_TIMESTAMP, 3000};
    if (!check_ok("new user", patchrec_user_new(&user, &error), &error)) {
        return;
    }
    check_ok("append", patchrec_user_append(user, catalog, 5, PATCHREC_NO_TIMESTAMP, &error), &error);
    check_failure("unknown item id", patchrec_user_append(user, catalog, 999, 0, &error),
                  PATCHREC_UNKNOWN_ITEM, &error, "999");
    check_failure("batch with an unknown id",
                  patchrec_user_append_batch(user, catalog, ids, timestamps, 3, &error),
                  PATCHREC_UNKNOWN_ITEM, &error, "999");
    check(patchrec_user_len(user) == 1, "failed appends change nothing");
    check_ok("append a batch", patchrec_user_append_batch(user, catalog, ids, timestamps, 2, &error), &error);
    check(patchrec_user_len(user) == 3, "the batch is appended");
    patchrec_user_clear(user);
    check(patchrec_user_len(user) == 0, "clear empties the history");
    patchrec_user_free(user);
}

static int in_catalogue(uint64_t id) {
    size_t i;
    for (i = 0; i < ITEM_COUNT; i++) {
        if (ITEM_IDS[i] == id) {
            return 1;
        }
    }
    return 0;
}

/* Every id in the catalogue, none twice, scores best first. */
static int well_ranked(const patchrec_recommendation_t *items, size_t len) {
    size_t i, j;
    for (i = 0; i < len; i++) {
        if (!in_catalogue(items[i].item_id) || (i > 0 && items[i].score > items[i - 1].score)) {
            return 0;
        }
        for (j = 0; j < i; j++) {
            if (items[j].item_id == items[i].item_id) {
                return 0;
            }
        }
    }
    return 1;
}

static void test_recommend(const patchrec_catalog_t *catalog) {
    const uint64_t history[] = {1, 2, 3, 4, 5};
    patchrec_recommendation_t items[5];
    patchrec_query_options_t *options = patchrec_query_options_new();
    patchrec_user_t *user = NULL;
    patchrec_error_t *error = NULL;
    size_t len = 0, i;
    if (!check_ok("new user", patchrec_user_new(&user, &error), &error)) {
        return;
    }
    check_ok("append history", patchrec_user_append_batch(user, catalog, history, NULL, 5, &error), &error);
    check_ok("set k", patchrec_query_options_set_k(options, 5, &error), &error);

    check_failure("NULL user handle", patchrec_recommend(catalog, NULL, options, items, 5, &len, &error),
                  PATCHREC_NULL_ARGUMENT, &error, "user");
    check_failure("buffer too small", patchrec_recommend(catalog, user, options, items, 2, &len, &error),
                  PATCHREC_BUFFER_TOO_SMALL, &error, "5 recommendations");
    check(len == 5, "BUFFER_TOO_SMALL reports k");
    {
        /* k beyond the catalogue: the answer needs only the catalogue's size, so a caller
         * that sizes its buffer by *len never allocates k entries. */
        patchrec_query_options_t *huge = patchrec_query_options_new();
        check_ok("set k = 1e9", patchrec_query_options_set_k(huge, 1000000000, &error), &error);
        check_failure("k = 1e9 without room", patchrec_recommend(catalog, user, huge, NULL, 0, &len, &error),
                      PATCHREC_BUFFER_TOO_SMALL, &error, "8 recommendations");
        check(len == ITEM_COUNT, "BUFFER_TOO_SMALL reports the catalogue's size when k exceeds it");
        patchrec_query_options_free(huge);
    }
    if (check_ok("recommend", patchrec_recommend(catalog, user, options, items, 5, &len, &error), &error)) {
        check(len == 5 && well_ranked(items, len), "top 5: catalogue ids, no repeats, scores descending");
        for (i = 0; i < len; i++) {
            printf("  %llu %.4f\n", (unsigned long long)items[i].item_id, items[i].score);
        }
    }

    {
        /* The same query decoded by the batching worker, then with batching off again. */
        patchrec_recommendation_t batched[5];
        size_t batched_len = 0;
        check_failure("batching on NULL", patchrec_catalog_set_batching(NULL, 4, 1000, &error),
                      PATCHREC_NULL_ARGUMENT, &error, "catalog");
        check_failure("an endless batching wait", patchrec_catalog_set_batching(catalog, 4, UINT64_MAX, &error),
                      PATCHREC_INVALID_ARGUMENT, &error, "max_wait");
        check_failure("an endless wait while turning batching off",
                      patchrec_catalog_set_batching(catalog, 0, UINT64_MAX, &error), PATCHREC_INVALID_ARGUMENT,
                      &error, "max_wait");
        check_failure("a batch of SIZE_MAX queries", patchrec_catalog_set_batching(catalog, SIZE_MAX, 1000, &error),
                      PATCHREC_INVALID_ARGUMENT, &error, "max_batch");
        check_ok("batching on", patchrec_catalog_set_batching(catalog, 4, 1000, &error), &error);
        if (check_ok("recommend batched",
                     patchrec_recommend(catalog, user, options, batched, 5, &batched_len, &error), &error)) {
            int same = batched_len == len;
            for (i = 0; same && i < len; i++) {
                float d = batched[i].score - items[i].score;
                same = batched[i].item_id == items[i].item_id && d < 1e-4f && d > -1e-4f;
            }
            check(same, "batched decoding gives the same top 5");
        }
        check_ok("batching off", patchrec_catalog_set_batching(catalog, 0, 0, &error), &error);
    }

    check_ok("exclude history", patchrec_query_options_set_exclude_history(options, true, &error), &error);
    if (check_ok("recommend excluding history",
                 patchrec_recommend(catalog, user, options, items, 5, &len, &error), &error)) {
        /* Only 3 of the 8 items are not in the history. */
        check(len == 3 && well_ranked(items, len) && items[0].item_id > 5 && items[1].item_id > 5 &&
                  items[2].item_id > 5,
              "excluding history leaves the 3 unseen items");
    }
    patchrec_query_options_free(options);
    patchrec_user_free(user);
}

static void test_layout_stats(const patchrec_catalog_t *catalog) {
    const uint64_t history[] = {1, 2, 3, 4, 5, 6, 7, 8};
    patchrec_query_options_t *options = patchrec_query_options_new();
    patchrec_user_t *user = NULL;
    patchrec_error_t *error = NULL;
    size_t vanilla_len = 0, compressed_len = 0;
    double vanilla_ratio = 0, compressed_ratio = 0;
    patchrec_user_new(&user, NULL);
    check_ok("append history", patchrec_user_append_batch(user, catalog, history, NULL, 8, &error), &error);
    check_ok("vanilla", patchrec_query_options_set_layout(options, PATCHREC_LAYOUT_VANILLA, 0, &error),
             &error);
    check_ok("vanilla stats",
             patchrec_user_layout_stats(user, catalog, options, &vanilla_len, &vanilla_ratio, &error),
             &error);
    check_ok("PFT-S", patchrec_query_options_set_layout(options, PATCHREC_LAYOUT_PFT_S, 2, &error), &error);
    check_ok("PFT-S stats",
             patchrec_user_layout_stats(user, catalog, options, &compressed_len, &compressed_ratio, &error),
             &error);
    check(vanilla_ratio == 1.0 && compressed_ratio > 1.0 && compressed_len < vanilla_len,
          "PFT-S:2 compresses the history");
    printf("  vanilla: %zu positions, ratio %.2f; pft-s:2: %zu positions, ratio %.2f\n", vanilla_len,
           vanilla_ratio, compressed_len, compressed_ratio);
    check_ok("stats with NULL out-params",
             patchrec_user_layout_stats(user, catalog, NULL, NULL, NULL, &error), &error);
    patchrec_query_options_free(options);
    patchrec_user_free(user);
}

/* Visits of two items an hour apart: with a 10-minute session gap, stream-s:4 makes
 * sessions of two instead of four, so the prompt is shorter; a gap needs stream-s. */
static void test_session_gap(const patchrec_catalog_t *catalog) {
    const uint64_t history[] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t times[8];
    patchrec_query_options_t *options = patchrec_query_options_new();
    patchrec_user_t *user = NULL;
    patchrec_error_t *error = NULL;
    patchrec_recommendation_t items[5];
    size_t counted_len = 0, visits_len = 0, off_len = 0, n = 0;
    double counted_ratio = 0, visits_ratio = 0;
    for (int i = 0; i < 8; i++) {
        times[i] = 1700000000 + (i / 2) * 3600 + (i % 2) * 60;
    }
    patchrec_user_new(&user, NULL);
    check_ok("append timed history", patchrec_user_append_batch(user, catalog, history, times, 8, &error),
             &error);
    check_ok("k = 5", patchrec_query_options_set_k(options, 5, &error), &error);
    check_ok("stream-s:4", patchrec_query_options_set_layout(options, PATCHREC_LAYOUT_STREAM_S, 4, &error),
             &error);
    check_ok("counted stats",
             patchrec_user_layout_stats(user, catalog, options, &counted_len, &counted_ratio, &error), &error);
    check_ok("session gap", patchrec_query_options_set_session_gap(options, 600, &error), &error);
    check_ok("by-visit stats",
             patchrec_user_layout_stats(user, catalog, options, &visits_len, &visits_ratio, &error), &error);
    check(visits_len < counted_len && visits_ratio > counted_ratio, "a session gap groups by visit");
    printf("  stream-s:4: %zu positions; with a 600 s gap: %zu\n", counted_len, visits_len);
    check_ok("recommend with a gap", patchrec_recommend(catalog, user, options, items, 5, &n, &error),
             &error);
    check(n == 5, "five recommendations");
    check_ok("gap off", patchrec_query_options_set_session_gap(options, 0, &error), &error);
    check_ok("gap-off stats", patchrec_user_layout_stats(user, catalog, options, &off_len, NULL, &error),
             &error);
    check(off_len == counted_len, "gap 0 counts sessions again");
    check_ok("gap again", patchrec_query_options_set_session_gap(options, 600, &error), &error);
    check_ok("pft-s:4", patchrec_query_options_set_layout(options, PATCHREC_LAYOUT_PFT_S, 4, &error), &error);
    check_failure("a gap with pft-s", patchrec_recommend(catalog, user, options, items, 5, &n, &error),
                  PATCHREC_INVALID_ARGUMENT, &error, "stream-s");
    check_failure("NULL options", patchrec_query_options_set_session_gap(NULL, 600, &error),
                  PATCHREC_NULL_ARGUMENT, &error, "options");
    patchrec_query_options_free(options);
    patchrec_user_free(user);
}

/* Candidate scoring: the candidates that recommend returned get recommend's scores;
 * duplicates, unknown ids, the input order and bad flags behave as the header says. */
static void test_rank(const patchrec_catalog_t *catalog) {
    const uint64_t history[] = {1, 2, 3};
    patchrec_recommendation_t top[4], ranked[6];
    patchrec_query_options_t *options = patchrec_query_options_new();
    patchrec_user_t *user = NULL;
    patchrec_error_t *error = NULL;
    size_t len = 0, n = 0, i, j;
    if (!check_ok("new user for rank", patchrec_user_new(&user, &error), &error)) {
        return;
    }
    check_ok("append for rank", patchrec_user_append_batch(user, catalog, history, NULL, 3, &error), &error);
    check_ok("set k = 4", patchrec_query_options_set_k(options, 4, &error), &error);
    check_ok("set exact", patchrec_query_options_set_exact(options, true, &error), &error);
    if (check_ok("recommend before rank", patchrec_recommend(catalog, user, options, top, 4, &len, &error),
                 &error)) {
        /* The same ids reversed, one of them twice: best first again, each once. */
        uint64_t ids[5];
        int same = 1;
        for (i = 0; i < len; i++) {
            ids[i] = top[len - 1 - i].item_id;
        }
        ids[len] = ids[0];
        if (check_ok("rank", patchrec_rank(catalog, user, options, ids, len + 1, 0, ranked, 6, &n, &error),
                     &error)) {
            same = n == len;
            for (i = 0; same && i < len; i++) {
                float d = ranked[i].score - top[i].score;
                same = ranked[i].item_id == top[i].item_id && d < 1e-4f && d > -1e-4f;
            }
            check(same, "rank scores recommend's top 4 as recommend does, best first, duplicates once");
        }
        if (check_ok("rank in input order",
                     patchrec_rank(catalog, user, options, ids, len, PATCHREC_RANK_INPUT_ORDER, ranked, 6, &n,
                                   &error),
                     &error)) {
            same = n == len;
            for (i = 0; same && i < len; i++) {
                same = ranked[i].item_id == ids[i];
            }
            check(same, "PATCHREC_RANK_INPUT_ORDER keeps the candidates' order");
        }
    }
    {
        const uint64_t with_unknown[] = {2, 4242, 7};
        check_failure("an unknown candidate", patchrec_rank(catalog, user, NULL, with_unknown, 3, 0, ranked, 6, &n,
                                                            &error),
                      PATCHREC_UNKNOWN_ITEM, &error, "4242");
        if (check_ok("skip unknown candidates",
                     patchrec_rank(catalog, user, NULL, with_unknown, 3, PATCHREC_RANK_SKIP_UNKNOWN, ranked, 6, &n,
                                   &error),
                     &error)) {
            check(n == 2, "the unknown candidate is left out");
            for (j = 0; j < n; j++) {
                check(ranked[j].item_id == 2 || ranked[j].item_id == 7, "only known candidates");
            }
        }
        check_failure("rank into a small buffer", patchrec_rank(catalog, user, NULL, with_unknown, 3, 0, ranked, 2,
                                                                &n, &error),
                      PATCHREC_BUFFER_TOO_SMALL, &error, "3 candidates");
        check(n == 3, "BUFFER_TOO_SMALL reports the candidates' count");
        check_failure("unknown flags", patchrec_rank(catalog, user, NULL, with_unknown, 3, 8, ranked, 6, &n, &error),
                      PATCHREC_INVALID_ARGUMENT, &error, "flags");
        check_ok("no candidates", patchrec_rank(catalog, user, NULL, NULL, 0, 0, NULL, 0, &n, &error), &error);
        check(n == 0, "no candidates, nothing written");
    }
    patchrec_query_options_free(options);
    patchrec_user_free(user);
}

/* Removing and retitling on a catalogue of its own: a removed item is never recommended
 * again, a retitled one reads back its new title, bad updates change nothing. */
static void test_updates(const char *dir) {
    patchrec_catalog_t *catalog = make_catalog(dir);
    patchrec_error_t *error = NULL;
    patchrec_recommendation_t items[ITEM_COUNT];
    patchrec_query_options_t *options = patchrec_query_options_new();
    patchrec_user_t *user = NULL;
    const uint64_t gone[] = {2, 6};
    const uint64_t with_unknown[] = {1, 999};
    const uint64_t history[] = {1, 3};
    char title[64];
    size_t len = 0, i;
    if (catalog == NULL) {
        return;
    }
    check_ok("remove two", patchrec_catalog_remove(catalog, gone, 2, &error), &error);
    check(patchrec_catalog_len(catalog) == ITEM_COUNT - 2, "removed items leave the count");
    check_failure("remove an unknown id", patchrec_catalog_remove(catalog, with_unknown, 2, &error),
                  PATCHREC_UNKNOWN_ITEM, &error, "999");
    check(patchrec_catalog_len(catalog) == ITEM_COUNT - 2, "a failed removal removes nothing");
    check_failure("retitle a removed id", patchrec_catalog_set_title(catalog, 2, "Heat (1995)", &error),
                  PATCHREC_UNKNOWN_ITEM, &error, "2");
    check_failure("retitle to an empty title", patchrec_catalog_set_title(catalog, 3, " ", &error),
                  PATCHREC_INVALID_ARGUMENT, &error, "no visible characters");
    check_ok("retitle", patchrec_catalog_set_title(catalog, 3, "Fargo Redux (2026)", &error), &error);
    if (check_ok("title after retitle", patchrec_catalog_title(catalog, 3, title, sizeof title, &len, &error),
                 &error)) {
        check(strcmp(title, "Fargo Redux (2026)") == 0, "the new title reads back");
    }
    check_ok("user for updates", patchrec_user_new(&user, &error), &error);
    check_ok("append", patchrec_user_append_batch(user, catalog, history, NULL, 2, &error), &error);
    check_failure("append a removed item", patchrec_user_append(user, catalog, 6, PATCHREC_NO_TIMESTAMP, &error),
                  PATCHREC_UNKNOWN_ITEM, &error, "6");
    check_ok("k = all", patchrec_query_options_set_k(options, ITEM_COUNT, &error), &error);
    if (check_ok("recommend after updates",
                 patchrec_recommend(catalog, user, options, items, ITEM_COUNT, &len, &error), &error)) {
        int fine = len == ITEM_COUNT - 2;
        for (i = 0; i < len; i++) {
            fine = fine && items[i].item_id != 2 && items[i].item_id != 6;
        }
        check(fine, "removed items are never recommended");
    }
    {
        /* Filters: an allow-list of three less a denied one leaves two; clearing restores. */
        const uint64_t allow[] = {1, 4, 5, 4242};
        const uint64_t deny[] = {4};
        patchrec_recommendation_t filtered[ITEM_COUNT];
        size_t filtered_len = 0;
        check_ok("allow", patchrec_query_options_set_allow(options, allow, 4, &error), &error);
        check_ok("deny", patchrec_query_options_set_deny(options, deny, 1, &error), &error);
        if (check_ok("recommend filtered",
                     patchrec_recommend(catalog, user, options, filtered, ITEM_COUNT, &filtered_len, &error),
                     &error)) {
            check(filtered_len == 2 &&
                      ((filtered[0].item_id == 1 && filtered[1].item_id == 5) ||
                       (filtered[0].item_id == 5 && filtered[1].item_id == 1)),
                  "allowed less denied: items 1 and 5 only");
        }
        check_failure("allow from NULL", patchrec_query_options_set_allow(options, NULL, 2, &error),
                      PATCHREC_NULL_ARGUMENT, &error, "ids");
        check_ok("clear filters", patchrec_query_options_clear_filters(options, &error), &error);
    }
    {
        /* A KV budget of 1 byte holds nothing: the next query misses, answers the same. */
        patchrec_kv_stats_t stats;
        patchrec_recommendation_t again[ITEM_COUNT];
        size_t again_len = 0;
        check_ok("kv stats without a budget", patchrec_catalog_kv_stats(catalog, &stats, &error), &error);
        check(stats.capacity == SIZE_MAX && stats.bytes_held == 0, "no budget: SIZE_MAX, nothing counted");
        check_ok("set a kv budget", patchrec_catalog_set_kv_budget(catalog, 1, &error), &error);
        if (check_ok("recommend under the budget",
                     patchrec_recommend(catalog, user, options, again, ITEM_COUNT, &again_len, &error), &error)) {
            int same = again_len == len;
            for (i = 0; same && i < len; i++) {
                float d = again[i].score - items[i].score;
                same = again[i].item_id == items[i].item_id && d < 1e-4f && d > -1e-4f;
            }
            check(same, "the same answer under a KV budget");
        }
        check_ok("kv stats", patchrec_catalog_kv_stats(catalog, &stats, &error), &error);
        check(stats.capacity == 1 && stats.bytes_held == 0 && stats.hits + stats.misses == 1 && stats.evictions == 1,
              "a KV larger than the budget is not kept, and counted");
        check_failure("kv stats into NULL", patchrec_catalog_kv_stats(catalog, NULL, &error),
                      PATCHREC_NULL_ARGUMENT, &error, "out");
        check_ok("lift the kv budget", patchrec_catalog_set_kv_budget(catalog, SIZE_MAX, &error), &error);
    }
    {
        /* Patches computed on demand give the same answer; an unknown kind is refused. */
        patchrec_recommendation_t again[ITEM_COUNT];
        size_t again_len = 0;
        check_ok("patches on demand",
                 patchrec_catalog_set_patch_storage(catalog, PATCHREC_PATCHES_ON_DEMAND, &error), &error);
        if (check_ok("recommend with patches on demand",
                     patchrec_recommend(catalog, user, options, again, ITEM_COUNT, &again_len, &error), &error)) {
            int same = again_len == len;
            for (i = 0; same && i < len; i++) {
                float d = again[i].score - items[i].score;
                same = again[i].item_id == items[i].item_id && d < 1e-4f && d > -1e-4f;
            }
            check(same, "the same answer with patches on demand");
        }
        check_failure("unknown patch storage", patchrec_catalog_set_patch_storage(catalog, 7, &error),
                      PATCHREC_INVALID_ARGUMENT, &error, "patch storage 7");
        check_ok("patches in f32", patchrec_catalog_set_patch_storage(catalog, PATCHREC_PATCHES_F32, &error),
                 &error);
    }
    patchrec_query_options_free(options);
    patchrec_user_free(user);
    patchrec_catalog_free(catalog);
}

int main(int argc, char **argv) {
    patchrec_catalog_t *catalog;
    if (argc != 2) {
        fprintf(stderr, "usage: %s CHECKPOINT_DIR\n", argv[0]);
        return 2;
    }
    test_versions();
    test_missing_checkpoint();
    test_null_arguments(argv[1]);
    test_options(argv[1]);
    test_updates(argv[1]);
    catalog = make_catalog(argv[1]);
    if (catalog != NULL) {
        test_catalog(catalog);
        test_user(catalog);
        test_recommend(catalog);
        test_rank(catalog);
        test_layout_stats(catalog);
        test_session_gap(catalog);
        patchrec_catalog_free(catalog);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && catalog != NULL ? 0 : 1;
}
