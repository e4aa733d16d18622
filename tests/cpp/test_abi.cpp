// The C++17 wrapper (patchrec.hpp): happy path, errors as patchrec::Error with the right
// status, title round trip, versions, and concurrent queries on one catalogue. Run by
// tests/abi.rs as `test_abi_cpp CHECKPOINT_DIR`, compiled with
// -DPATCHREC_EXPECTED_VERSION="x.y.z" (the Cargo.toml version).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "patchrec.hpp"

#ifndef PATCHREC_EXPECTED_VERSION
#error "compile with -DPATCHREC_EXPECTED_VERSION='\"x.y.z\"'"
#endif

namespace {

template <typename T>
constexpr bool move_only = !std::is_copy_constructible_v<T> && !std::is_copy_assignable_v<T> &&
                           std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>;
static_assert(move_only<patchrec::Model> && move_only<patchrec::Catalog> && move_only<patchrec::User> &&
                  move_only<patchrec::QueryOptions>,
              "the wrapper's handles are move-only");

int passed = 0;
int failed = 0;

void check(bool ok, const std::string &what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    }
}

// `body` must throw patchrec::Error with status `want` and a message containing `needle`.
void check_throws(const std::string &what, patchrec_status_t want, const std::string &needle,
                  const std::function<void()> &body) {
    try {
        body();
        check(false, what + ": no exception");
    } catch (const patchrec::Error &e) {
        const std::string message = e.what();
        bool ok = e.status() == want && !message.empty() && message.find(needle) != std::string::npos;
        check(ok, what + ": got " + e.status_name() + " (\"" + message + "\"), want " +
                      patchrec_status_name(want) + " with \"" + needle + "\"");
        if (ok) {
            std::printf("ok: %s: %s: %s\n", what.c_str(), e.status_name(), message.c_str());
        }
    }
}

const std::vector<std::pair<std::uint64_t, std::string>> ITEMS = {
    {1, "Toy Story (1995)"},  {2, "Heat (1995)"},  {3, "Fargo (1996)"},         {4, "Am\xc3\xa9lie (2001)"},
    {5, "The Matrix (1999)"}, {6, "Alien (1979)"}, {7, "Jurassic Park (1993)"}, {8, "Groundhog Day (1993)"},
};

bool in_catalogue(std::uint64_t id) {
    return std::any_of(ITEMS.begin(), ITEMS.end(), [id](const auto &item) { return item.first == id; });
}

bool well_ranked(const std::vector<patchrec::Recommendation> &items) {
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (!in_catalogue(items[i].item_id) || (i > 0 && items[i].score > items[i - 1].score)) {
            return false;
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (items[j].item_id == items[i].item_id) {
                return false;
            }
        }
    }
    return true;
}

void test_versions() {
    check(patchrec::version() == PATCHREC_EXPECTED_VERSION, "version() is the Cargo.toml version");
    try {
        patchrec::check_abi();
        check(true, "check_abi");
    } catch (const patchrec::Error &e) {
        check(false, std::string("check_abi: ") + e.what());
    }
}

void test_errors(const std::string &dir) {
    check_throws("missing checkpoint directory", PATCHREC_IO, "/nonexistent/patchrec-ckpt",
                 [] { patchrec::Model::load("/nonexistent/patchrec-ckpt"); });
    check_throws("unknown device", PATCHREC_INVALID_ARGUMENT, "tpu",
                 [&] { patchrec::Model::load(dir, "tpu"); });
    check_throws("k = 0", PATCHREC_INVALID_ARGUMENT, "k must be at least 1",
                 [] { patchrec::QueryOptions().k(0); });
    check_throws("PFT-S with L = 0", PATCHREC_INVALID_ARGUMENT, "group size L",
                 [] { patchrec::QueryOptions().layout(patchrec::Layout::PftS, 0); });
    check_throws("negative session gap", PATCHREC_INVALID_ARGUMENT, "negative",
                 [] { patchrec::QueryOptions().session_gap(std::chrono::seconds(-1)); });
}

void test_catalog_and_user(const patchrec::Catalog &catalog) {
    check(catalog.size() == ITEMS.size(), "the catalogue holds the batch");
    check(catalog.title(4) == ITEMS[3].second, "title round trip (UTF-8)");
    check_throws("title of an unknown id", PATCHREC_UNKNOWN_ITEM, "999", [&] { catalog.title(999); });
    check_throws("duplicate id", PATCHREC_DUPLICATE_ITEM, "item id 2", [&] { catalog.add(2, "Heat again"); });
    check_throws("invalid UTF-8 title", PATCHREC_INVALID_UTF8, "title",
                 [&] { catalog.add(50, "Caf\xe9 (1999)"); });

    patchrec::User user;
    check_throws("unknown item id", PATCHREC_UNKNOWN_ITEM, "999", [&] { user.append(catalog, 999); });
    check_throws("timestamps not matching ids", PATCHREC_INVALID_ARGUMENT, "timestamps", [&] {
        user.append(catalog, {1, 2}, {10});
    });
    user.append(catalog, {1, 2}, {10, PATCHREC_NO_TIMESTAMP});
    check(user.size() == 2, "append a batch");
    user.clear();
    check(user.size() == 0, "clear");

    patchrec::User moved_from;
    patchrec::User moved_to = std::move(moved_from);
    check_throws("a moved-from handle", PATCHREC_NULL_ARGUMENT, "user",
                 [&] { moved_from.append(catalog, 1); });  // used after the move on purpose
}

void test_recommend(const patchrec::Catalog &catalog) {
    patchrec::User user;
    user.append(catalog, {1, 2, 3, 4, 5});

    auto top = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(5));
    check(top.size() == 5 && well_ranked(top), "top 5: catalogue ids, no repeats, scores descending");
    for (const auto &item : top) {
        std::printf("  %llu %s %.4f\n", static_cast<unsigned long long>(item.item_id),
                    catalog.title(item.item_id).c_str(), item.score);
    }

    auto unseen = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(5).exclude_history(true));
    check(unseen.size() == 3 && well_ranked(unseen) &&
              std::all_of(unseen.begin(), unseen.end(), [](const auto &r) { return r.item_id > 5; }),
          "excluding history leaves the 3 unseen items");

    // More than the catalogue holds: the wrapper sizes its buffer by what the answer needs.
    auto all = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(1000000000));
    check(all.size() == catalog.size() && well_ranked(all), "k = 1e9 returns the whole catalogue");

    auto vanilla =
        patchrec::layout_stats(catalog, user, patchrec::QueryOptions().layout(patchrec::Layout::Vanilla));
    auto pft_i =
        patchrec::layout_stats(catalog, user, patchrec::QueryOptions().layout(patchrec::Layout::PftI, 1));
    check(vanilla.compression_ratio == 1.0 && pft_i.compression_ratio > 1.0 &&
              pft_i.prompt_len < vanilla.prompt_len,
          "PFT-I:1 compresses the history");
}

// Candidate scoring: recommend's top 5, reversed and with a duplicate, come back with
// recommend's scores, best first; unknown ids throw or are skipped.
void test_rank(const patchrec::Catalog &catalog) {
    patchrec::User user;
    user.append(catalog, {1, 2, 3});
    auto top = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(5).exact(true));
    std::vector<std::uint64_t> ids;
    for (auto it = top.rbegin(); it != top.rend(); ++it) {
        ids.push_back(it->item_id);
    }
    ids.push_back(ids.front());
    auto ranked = patchrec::rank(catalog, user, ids);
    bool same = ranked.size() == top.size();
    for (std::size_t i = 0; same && i < top.size(); i++) {
        same = ranked[i].item_id == top[i].item_id && std::fabs(ranked[i].score - top[i].score) < 1e-4f;
    }
    check(same, "rank gives recommend's top 5 their scores, best first, a duplicate once");
    auto in_order = patchrec::rank(catalog, user, ids, patchrec::QueryOptions(), patchrec::RankOrder::input);
    check(in_order.size() == top.size() && in_order.front().item_id == ids.front(),
          "RankOrder::input keeps the candidates' order");
    check_throws("an unknown candidate", PATCHREC_UNKNOWN_ITEM, "4242",
                 [&] { patchrec::rank(catalog, user, {2, 4242}); });
    auto known = patchrec::rank(catalog, user, {2, 4242}, patchrec::QueryOptions(), patchrec::RankOrder::score,
                                patchrec::UnknownCandidates::skip);
    check(known.size() == 1 && known.front().item_id == 2, "UnknownCandidates::skip leaves the unknown id out");
}

// A const catalogue serves queries from several threads while another thread registers
// items; each query sees a consistent catalogue.
void test_concurrent_queries(const patchrec::Catalog &catalog) {
    std::vector<std::vector<patchrec::Recommendation>> results(3);
    std::vector<std::string> errors(results.size() + 1);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < results.size(); ++t) {
        threads.emplace_back([&catalog, &results, &errors, t] {
            try {
                patchrec::User user;
                user.append(catalog, {1, 2, 3});
                results[t] = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(3));
            } catch (const patchrec::Error &e) {
                errors[t] = e.what();
            }
        });
    }
    threads.emplace_back([&catalog, &errors] {
        try {
            catalog.add(200, "Brazil (1985)");
        } catch (const patchrec::Error &e) {
            errors.back() = e.what();
        }
    });
    for (auto &thread : threads) {
        thread.join();
    }
    bool ok = catalog.size() == ITEMS.size() + 1;
    for (std::size_t t = 0; t < results.size(); ++t) {
        ok = ok && results[t].size() == 3;
    }
    for (const auto &error : errors) {
        ok = ok && error.empty();
        if (!error.empty()) {
            std::fprintf(stderr, "  thread error: %s\n", error.c_str());
        }
    }
    check(ok, "concurrent queries and a registration on one catalogue");
}

// Training's error paths: a mistyped path is a missing file, never parsed as TOML; bad
// TOML names what is wrong. (tests/c/test_train.c trains for real.)
void test_train_errors() {
    check_throws("train_file on a missing file", PATCHREC_IO, "no-such-config.toml",
                 [] { patchrec::train_file("no-such-config.toml"); });
    check_throws("train_toml with an unknown stage kind", PATCHREC_INVALID_ARGUMENT, "nope",
                 [] { patchrec::train_toml("out = \"o\"\ndata = \"d\"\n[model.init]\n[[stage]]\nkind = \"nope\"\n"); });
    check_throws("train_toml with warmup_ratio 2", PATCHREC_INVALID_ARGUMENT, "warmup_ratio", [] {
        patchrec::train_toml("out = \"o\"\ndata = \"d\"\n[model.init]\n[[stage]]\nkind = \"sft\"\nwarmup_ratio = 2.0\n");
    });
}

}  // namespace

// Removing and retitling: a removed item is never recommended, a retitled one reads back
// its new title, unknown ids throw.
void test_updates(const std::string &dir) {
    patchrec::Catalog catalog(patchrec::Model::load(dir));
    catalog.add(ITEMS);
    catalog.remove({2, 6});
    check(catalog.size() == ITEMS.size() - 2, "removed items leave the count");
    check_throws("removing an unknown id", PATCHREC_UNKNOWN_ITEM, "999", [&] { catalog.remove({1, 999}); });
    check(catalog.size() == ITEMS.size() - 2, "a failed removal removes nothing");
    catalog.set_title(3, "Fargo Redux (2026)");
    check(catalog.title(3) == "Fargo Redux (2026)", "the new title reads back");
    patchrec::User user;
    user.append(catalog, {1, 3});
    auto all = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(ITEMS.size()));
    check(all.size() == ITEMS.size() - 2 &&
              std::none_of(all.begin(), all.end(), [](const auto &r) { return r.item_id == 2 || r.item_id == 6; }),
          "removed items are never recommended");

    auto filtered = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(ITEMS.size()).allow({1, 4, 5}).deny({4}));
    check(filtered.size() == 2 && std::all_of(filtered.begin(), filtered.end(),
                                              [](const auto &r) { return r.item_id == 1 || r.item_id == 5; }),
          "allowed less denied");

    catalog.set_kv_budget(1);
    auto bounded = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(ITEMS.size()));
    bool same = bounded.size() == all.size();
    for (std::size_t i = 0; same && i < all.size(); i++) {
        same = bounded[i].item_id == all[i].item_id && std::fabs(bounded[i].score - all[i].score) < 1e-4f;
    }
    check(same, "the same answer under a KV budget");
    auto stats = catalog.kv_stats();
    check(stats.capacity == 1 && stats.bytes_held == 0 && stats.evictions == 1, "the budget holds nothing");
    catalog.set_kv_budget(SIZE_MAX);
    check(catalog.kv_stats().capacity == SIZE_MAX, "SIZE_MAX lifts the budget");

    catalog.set_patch_storage(PATCHREC_PATCHES_ON_DEMAND);
    auto on_demand = patchrec::recommend(catalog, user, patchrec::QueryOptions().k(ITEMS.size()));
    same = on_demand.size() == all.size();
    for (std::size_t i = 0; same && i < all.size(); i++) {
        same = on_demand[i].item_id == all[i].item_id && std::fabs(on_demand[i].score - all[i].score) < 1e-4f;
    }
    check(same, "the same answer with patches on demand");
    catalog.set_patch_storage(PATCHREC_PATCHES_F32);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CHECKPOINT_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    test_versions();
    test_errors(dir);
    test_train_errors();
    try {
        patchrec::Catalog catalog(patchrec::Model::load(dir));  // outlives the model handle
        catalog.add(ITEMS);
        test_catalog_and_user(catalog);
        test_recommend(catalog);
        test_rank(catalog);
        test_concurrent_queries(catalog);
        test_updates(dir);
    } catch (const std::exception &e) {
        check(false, std::string("unexpected exception: ") + e.what());
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
