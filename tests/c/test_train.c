/* patchrec_train_toml and patchrec_train_file from C99: a progress callback that stops
 * training, then a resumed run from the same configuration as a file that finishes; bad
 * configurations and paths. Run by tests/abi.rs as `test_train DATA_DIR OUT_DIR`. */
#include <stdio.h>
#include <string.h>

#include "patchrec.h"

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

struct seen {
    int calls;
    int stop_at;
    int sane;
    char stage[32];
};

static bool on_progress(const patchrec_train_progress_t *p, void *user_data) {
    struct seen *seen = (struct seen *)user_data;
    seen->calls++;
    if (p->step == 0 || p->step > p->total_steps || !(p->loss > 0.0) || !(p->learning_rate > 0.0) ||
        !(p->tokens_per_second > 0.0) || p->stage == NULL) {
        seen->sane = 0;
    }
    snprintf(seen->stage, sizeof seen->stage, "%s", p->stage);
    return seen->calls != seen->stop_at;
}

int main(int argc, char **argv) {
    char config[2048];
    char config_path[1100];
    char final_dir[1024];
    struct seen first = {0, 2, 1, ""};
    struct seen rest = {0, -1, 1, ""};
    patchrec_error_t *error = NULL;
    patchrec_status_t status;
    FILE *f;
    if (argc != 3) {
        fprintf(stderr, "usage: %s DATA_DIR OUT_DIR\n", argv[0]);
        return 2;
    }
    snprintf(config, sizeof config,
             "out = \"%s\"\ndata = \"%s\"\n"
             "[model.init]\nvocab_size = 300\nhidden = 32\nlayers = 1\nheads = 2\nkv_heads = 1\n"
             "[[stage]]\nkind = \"pft-i\"\nm = 2\nmax_history = 6\nmax_steps = 4\nbatch_size = 2\n"
             "micro_batch = 2\nlearning_rate = 0.01\n",
             argv[2], argv[1]);

    status = patchrec_train_toml(config, NULL, false, on_progress, &first, &error);
    check(status == PATCHREC_STOPPED && error == NULL, "the callback stops training: PATCHREC_STOPPED");
    check(first.calls == 2 && first.sane, "the callback saw two sane steps");
    check(strcmp(first.stage, "pft-i2") == 0, "the progress names the stage");

    status = patchrec_train_toml(config, NULL, false, NULL, NULL, &error);
    check(status == PATCHREC_INVALID_ARGUMENT && error != NULL &&
              strstr(patchrec_error_message(error), "not empty") != NULL,
          "a used output folder without resume is refused");
    patchrec_error_free(error);
    error = NULL;

    /* The same configuration as a file; its paths are absolute, so its folder is moot. */
    snprintf(config_path, sizeof config_path, "%s.toml", argv[2]);
    f = fopen(config_path, "w");
    check(f != NULL && fputs(config, f) >= 0, "the configuration file is written");
    if (f != NULL) {
        fclose(f);
    }
    status = patchrec_train_file(config, true, NULL, NULL, &error);
    check(status == PATCHREC_IO && error != NULL && strstr(patchrec_error_message(error), "out = ") != NULL,
          "TOML text given as a path is a missing file named in the message, not parsed");
    patchrec_error_free(error);
    error = NULL;

    status = patchrec_train_file(config_path, true, on_progress, &rest, &error);
    check(status == PATCHREC_OK && error == NULL, "resume finishes: PATCHREC_OK");
    check(rest.calls == 2 && rest.sane, "resume ran the remaining two steps");
    snprintf(final_dir, sizeof final_dir, "%s/01-pft-i2/model.safetensors", argv[2]);
    f = fopen(final_dir, "rb");
    check(f != NULL, "the final checkpoint exists");
    if (f != NULL) {
        fclose(f);
    }

    status = patchrec_train_toml("[[stage]]\nkind = \"nope\"\n", NULL, false, NULL, NULL, &error);
    check(status == PATCHREC_INVALID_ARGUMENT && error != NULL, "a bad configuration is an error");
    patchrec_error_free(error);
    error = NULL;
    snprintf(config, sizeof config,
             "out = \"%s-nan\"\ndata = \"%s\"\n[model.init]\n"
             "[[stage]]\nkind = \"sft\"\nlearning_rate = nan\n",
             argv[2], argv[1]);
    status = patchrec_train_toml(config, NULL, false, NULL, NULL, &error);
    check(status == PATCHREC_INVALID_ARGUMENT && error != NULL &&
              strstr(patchrec_error_message(error), "learning_rate") != NULL,
          "a NaN learning rate is refused, naming the field");
    patchrec_error_free(error);
    error = NULL;
    status = patchrec_train_toml(NULL, NULL, false, NULL, NULL, &error);
    check(status == PATCHREC_NULL_ARGUMENT, "a NULL configuration is an error");
    patchrec_error_free(error);
    error = NULL;
    status = patchrec_train_file(NULL, false, NULL, NULL, &error);
    check(status == PATCHREC_NULL_ARGUMENT, "a NULL path is an error");
    patchrec_error_free(error);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
