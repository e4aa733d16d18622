// libpatchrec C++17 wrapper: header-only, move-only RAII classes over the C ABI in
// patchrec.h. Failures throw patchrec::Error, which carries the C status. Each class has
// raw() for calling the C API directly; the C header's threading rule carries over: const
// methods may run concurrently, non-const ones need exclusive access.
#ifndef PATCHREC_HPP
#define PATCHREC_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "patchrec.h"

namespace patchrec {

// A failed call: what() is the library's message; status() the C status code.
class Error : public std::runtime_error {
public:
    Error(patchrec_status_t status, const std::string &message)
        : std::runtime_error(message), status_(status) {}

    patchrec_status_t status() const noexcept { return status_; }
    // The status constant's name, such as "PATCHREC_UNKNOWN_ITEM".
    const char *status_name() const noexcept { return patchrec_status_name(status_); }

private:
    patchrec_status_t status_;
};

namespace detail {

// Takes ownership of `error` and throws it unless `status` is PATCHREC_OK.
inline void check(patchrec_status_t status, patchrec_error_t *error) {
    if (status == PATCHREC_OK) {
        return;
    }
    std::unique_ptr<patchrec_error_t, void (*)(patchrec_error_t *)> owned(error, patchrec_error_free);
    throw Error(status, patchrec_error_message(owned.get()));
}

// Calls a status-returning C function with `args` and an error out-param; throws on failure.
template <typename... Params, typename... Args>
void call(patchrec_status_t (*function)(Params...), Args... args) {
    patchrec_error_t *error = nullptr;
    patchrec_status_t status = function(args..., &error);
    check(status, error);
}

struct Free {
    void operator()(patchrec_model_t *p) const noexcept { patchrec_model_free(p); }
    void operator()(patchrec_catalog_t *p) const noexcept { patchrec_catalog_free(p); }
    void operator()(patchrec_user_t *p) const noexcept { patchrec_user_free(p); }
    void operator()(patchrec_query_options_t *p) const noexcept { patchrec_query_options_free(p); }
    void operator()(patchrec_model_options_t *p) const noexcept { patchrec_model_options_free(p); }
};

template <typename T>
using Owned = std::unique_ptr<T, Free>;

}  // namespace detail

// The library version, such as "0.1.0".
inline std::string version() {
    return patchrec_version();
}

// Throws unless the library implements the C ABI this header was written for; a binding
// calls it once at start-up (Model::load does).
inline void check_abi() {
    if (patchrec_abi_version() != PATCHREC_ABI_VERSION) {
        throw Error(PATCHREC_UNSUPPORTED, "libpatchrec implements C ABI version " +
                                              std::to_string(patchrec_abi_version()) +
                                              ", but this program was compiled for version " +
                                              std::to_string(PATCHREC_ABI_VERSION));
    }
}

// A loaded checkpoint. Thread-safe; catalogues keep it alive, so it may be destroyed first.
class Model {
public:
    // `device` is "cpu", "cuda:N", or empty for the default (cpu); `quantization` is
    // "q8_0", "q4_0", "bf16", or empty for the checkpoint's f32 weights.
    static Model load(const std::string &checkpoint_dir, const std::string &device = "",
                      const std::string &quantization = "") {
        check_abi();
        detail::Owned<patchrec_model_options_t> options(patchrec_model_options_new());
        if (!device.empty()) {
            detail::call(patchrec_model_options_set_device, options.get(), device.c_str());
        }
        if (!quantization.empty()) {
            detail::call(patchrec_model_options_set_quantization, options.get(), quantization.c_str());
        }
        patchrec_model_t *model = nullptr;
        detail::call(patchrec_model_load, checkpoint_dir.c_str(), options.get(), &model);
        return Model(model);
    }

    const patchrec_model_t *raw() const noexcept { return handle_.get(); }
    patchrec_model_t *raw() noexcept { return handle_.get(); }

private:
    explicit Model(patchrec_model_t *handle) : handle_(handle) {}
    detail::Owned<patchrec_model_t> handle_;
};

// The items a model may recommend. Thread-safe, registrations included.
class Catalog {
public:
    explicit Catalog(const Model &model) {
        patchrec_catalog_t *catalog = nullptr;
        detail::call(patchrec_catalog_new, model.raw(), &catalog);
        handle_.reset(catalog);
    }

    void add(std::uint64_t id, const std::string &title) const {
        detail::call(patchrec_catalog_add, raw(), id, title.c_str());
    }

    // All or nothing.
    void add(const std::vector<std::pair<std::uint64_t, std::string>> &items) const {
        std::vector<std::uint64_t> ids;
        std::vector<const char *> titles;
        ids.reserve(items.size());
        titles.reserve(items.size());
        for (const auto &item : items) {
            ids.push_back(item.first);
            titles.push_back(item.second.c_str());
        }
        detail::call(patchrec_catalog_add_batch, raw(), ids.data(), titles.data(), items.size());
    }

    // All or nothing; an unknown id throws (PATCHREC_UNKNOWN_ITEM). Histories that hold a
    // removed item keep working; it is never recommended again.
    void remove(const std::vector<std::uint64_t> &ids) const {
        detail::call(patchrec_catalog_remove, raw(), ids.data(), ids.size());
    }

    void set_title(std::uint64_t id, const std::string &title) const {
        detail::call(patchrec_catalog_set_title, raw(), id, title.c_str());
    }

    // Items that can be recommended (registered, not removed).
    std::size_t size() const noexcept { return patchrec_catalog_len(raw()); }

    // Bounds the bytes of prompt KV this catalogue's users hold together, evicting the
    // least recently used users' KV beyond it (answers do not change); SIZE_MAX lifts it.
    void set_kv_budget(std::size_t bytes) const { detail::call(patchrec_catalog_set_kv_budget, raw(), bytes); }

    // How the catalogue keeps its item patches: PATCHREC_PATCHES_ON_DEMAND (the default:
    // none kept, computed per query with the same values as f32), PATCHREC_PATCHES_F32 or
    // PATCHREC_PATCHES_F16 (half f32's bytes). The items registered so far are converted once.
    void set_patch_storage(patchrec_patch_storage_t storage) const {
        detail::call(patchrec_catalog_set_patch_storage, raw(), static_cast<std::uint32_t>(storage));
    }

    // Bytes held, hits, misses and evictions of the KV budget.
    patchrec_kv_stats_t kv_stats() const {
        patchrec_kv_stats_t stats{};
        detail::call(patchrec_catalog_kv_stats, raw(), &stats);
        return stats;
    }

    // Concurrent recommend() calls on this catalogue share decoding (one forward pass per
    // step for all waiting queries); max_batch 0 turns it off. An idle worker waits up to
    // max_wait for more queries before its first step.
    void set_batching(std::size_t max_batch, std::chrono::microseconds max_wait) {
        detail::call(patchrec_catalog_set_batching, raw(), max_batch,
                     static_cast<std::uint64_t>(max_wait.count()));
    }

    std::string title(std::uint64_t id) const {
        // Ask for the length, then read; a title changed in between (set_title) is longer
        // or shorter, so read again until it fits.
        std::string title;
        for (;;) {
            std::size_t len = 0;
            patchrec_error_t *error = nullptr;
            patchrec_status_t status =
                patchrec_catalog_title(raw(), id, title.empty() ? nullptr : &title[0], title.size(), &len, &error);
            if (status == PATCHREC_BUFFER_TOO_SMALL && len + 1 > title.size()) {
                patchrec_error_free(error);
                title.assign(len + 1, '\0');
                continue;
            }
            detail::check(status, error);
            title.resize(len);
            return title;
        }
    }

    const patchrec_catalog_t *raw() const noexcept { return handle_.get(); }

private:
    detail::Owned<patchrec_catalog_t> handle_;
};

// One user's history. Not synchronised.
class User {
public:
    User() {
        patchrec_user_t *user = nullptr;
        detail::call(patchrec_user_new, &user);
        handle_.reset(user);
    }

    void append(const Catalog &catalog, std::uint64_t item_id,
                std::int64_t timestamp = PATCHREC_NO_TIMESTAMP) {
        detail::call(patchrec_user_append, raw(), catalog.raw(), item_id, timestamp);
    }

    // All or nothing; `timestamps` is empty (none known) or one per id.
    void append(const Catalog &catalog, const std::vector<std::uint64_t> &ids,
                const std::vector<std::int64_t> &timestamps = {}) {
        if (!timestamps.empty() && timestamps.size() != ids.size()) {
            throw Error(PATCHREC_INVALID_ARGUMENT, "append: " + std::to_string(ids.size()) + " ids but " +
                                                       std::to_string(timestamps.size()) + " timestamps");
        }
        detail::call(patchrec_user_append_batch, raw(), catalog.raw(), ids.data(),
                     timestamps.empty() ? nullptr : timestamps.data(), ids.size());
    }

    std::size_t size() const noexcept { return patchrec_user_len(raw()); }
    void clear() noexcept { patchrec_user_clear(raw()); }

    const patchrec_user_t *raw() const noexcept { return handle_.get(); }
    patchrec_user_t *raw() noexcept { return handle_.get(); }

private:
    detail::Owned<patchrec_user_t> handle_;
};

enum class Layout : std::uint32_t {
    Vanilla = PATCHREC_LAYOUT_VANILLA,
    PftI = PATCHREC_LAYOUT_PFT_I,
    PftS = PATCHREC_LAYOUT_PFT_S,
    StreamS = PATCHREC_LAYOUT_STREAM_S,
    Budget = PATCHREC_LAYOUT_BUDGET,
};

// How to answer a query; the setters chain. Unset values are the checkpoint's defaults.
class QueryOptions {
public:
    QueryOptions() : handle_(patchrec_query_options_new()) {}

    QueryOptions &k(std::size_t k) {
        detail::call(patchrec_query_options_set_k, raw(), k);
        return *this;
    }
    QueryOptions &beam_width(std::size_t width) {
        detail::call(patchrec_query_options_set_beam_width, raw(), width);
        return *this;
    }
    // `param` is M for PFT-I, L for PFT-S, ignored for vanilla.
    QueryOptions &layout(Layout kind, std::size_t param = 0) {
        detail::call(patchrec_query_options_set_layout, raw(), static_cast<std::uint32_t>(kind), param);
        return *this;
    }
    QueryOptions &max_items(std::size_t max_items) {
        detail::call(patchrec_query_options_set_max_items, raw(), max_items);
        return *this;
    }
    // stream-s only: a session also closes after a pause longer than `gap` between two
    // interactions; 0 turns it off.
    QueryOptions &session_gap(std::chrono::seconds gap) {
        if (gap.count() < 0) {
            throw Error(PATCHREC_INVALID_ARGUMENT, "session gap must not be negative");
        }
        detail::call(patchrec_query_options_set_session_gap, raw(),
                     static_cast<std::uint64_t>(gap.count()));
        return *this;
    }
    QueryOptions &exclude_history(bool exclude) {
        detail::call(patchrec_query_options_set_exclude_history, raw(), exclude);
        return *this;
    }
    QueryOptions &exact(bool exact) {
        detail::call(patchrec_query_options_set_exact, raw(), exact);
        return *this;
    }

    // Recommend only these items (unknown ids are ignored); an empty list allows nothing.
    QueryOptions &allow(const std::vector<std::uint64_t> &ids) {
        detail::call(patchrec_query_options_set_allow, raw(), ids.data(), ids.size());
        return *this;
    }

    // Never recommend these items (unknown ids are ignored).
    QueryOptions &deny(const std::vector<std::uint64_t> &ids) {
        detail::call(patchrec_query_options_set_deny, raw(), ids.data(), ids.size());
        return *this;
    }

    QueryOptions &clear_filters() {
        detail::call(patchrec_query_options_clear_filters, raw());
        return *this;
    }

    const patchrec_query_options_t *raw() const noexcept { return handle_.get(); }
    patchrec_query_options_t *raw() noexcept { return handle_.get(); }

private:
    detail::Owned<patchrec_query_options_t> handle_;
};

using Recommendation = patchrec_recommendation_t;

struct LayoutStats {
    std::size_t prompt_len;
    double compression_ratio;
};

// The next items for `user`, best first.
inline std::vector<Recommendation> recommend(const Catalog &catalog, User &user,
                                             const QueryOptions &options = QueryOptions()) {
    // The first call only asks how much room the answer needs (k, or the catalogue's size
    // when smaller): with no room it fails before any work. Items registered meanwhile
    // may need more, so a later call can ask again.
    std::vector<Recommendation> items;
    for (;;) {
        std::size_t len = 0;
        patchrec_error_t *error = nullptr;
        patchrec_status_t status = patchrec_recommend(catalog.raw(), user.raw(), options.raw(), items.data(),
                                                      items.size(), &len, &error);
        if (status == PATCHREC_BUFFER_TOO_SMALL && len > items.size()) {
            patchrec_error_free(error);
            items.resize(len);
            continue;
        }
        detail::check(status, error);
        items.resize(len);
        return items;
    }
}

// How `rank` orders and filters its answer (PATCHREC_RANK_* flags).
enum class RankOrder : std::uint32_t { score = 0, input = PATCHREC_RANK_INPUT_ORDER };
enum class UnknownCandidates : std::uint32_t { fail = 0, skip = PATCHREC_RANK_SKIP_UNKNOWN };

// Scores `candidates` for `user`: each one's title log-probability given the user's
// prompt, on `recommend`'s scale. One entry per distinct candidate, best first or in the
// candidates' order; an unknown id throws (status PATCHREC_UNKNOWN_ITEM) or is left out.
// `options` gives the layout and history truncation.
inline std::vector<Recommendation> rank(const Catalog &catalog, User &user,
                                        const std::vector<std::uint64_t> &candidates,
                                        const QueryOptions &options = QueryOptions(),
                                        RankOrder order = RankOrder::score,
                                        UnknownCandidates unknown = UnknownCandidates::fail) {
    std::vector<Recommendation> items(candidates.size());
    std::size_t len = 0;
    detail::call(patchrec_rank, catalog.raw(), user.raw(), options.raw(), candidates.data(), candidates.size(),
                 static_cast<std::uint32_t>(order) | static_cast<std::uint32_t>(unknown), items.data(),
                 items.size(), &len);
    items.resize(len);
    return items;
}

// How `user`'s history would be laid out for `options`, without running the model.
inline LayoutStats layout_stats(const Catalog &catalog, const User &user,
                                const QueryOptions &options = QueryOptions()) {
    LayoutStats stats{0, 1.0};
    detail::call(patchrec_user_layout_stats, user.raw(), catalog.raw(), options.raw(), &stats.prompt_len,
                 &stats.compression_ratio);
    return stats;
}

// One training step, as the progress callback sees it.
struct TrainProgress {
    std::string stage;  // "sft", "ppt", "pft-i5", ...
    unsigned stage_index;
    std::uint64_t step;
    std::uint64_t total_steps;
    double loss;
    double learning_rate;
    double tokens_per_second;
};

// Called after every optimizer step; return false to stop (the resume state is written).
using TrainCallback = std::function<bool(const TrainProgress &)>;

namespace detail {

// Carries the C++ callback through the C callback's user_data. An exception it throws
// cannot cross the C library: it stops training and is rethrown once the call returns.
struct TrainContext {
    const TrainCallback *callback;
    std::exception_ptr failure;

    static bool trampoline(const patchrec_train_progress_t *p, void *user_data) {
        auto *context = static_cast<TrainContext *>(user_data);
        try {
            return (*context->callback)(TrainProgress{p->stage, p->stage_index, p->step, p->total_steps, p->loss,
                                                      p->learning_rate, p->tokens_per_second});
        } catch (...) {
            context->failure = std::current_exception();
            return false;
        }
    }

    // True when training finished, false when the callback stopped it; throws on failure.
    bool finish(patchrec_status_t status, patchrec_error_t *error) {
        if (failure) {
            patchrec_error_free(error);
            std::rethrow_exception(failure);
        }
        if (status == PATCHREC_STOPPED) {
            return false;
        }
        check(status, error);
        return true;
    }
};

}  // namespace detail

// Runs the training stages of the TOML file at `path` (docs/TRAINING.md); relative paths in
// it are taken from its folder. With `resume`, an interrupted run continues. Returns true
// when every stage finished, false when `progress` stopped it (call again with resume).
inline bool train_file(const std::string &path, bool resume = false, const TrainCallback &progress = nullptr) {
    detail::TrainContext context{&progress, nullptr};
    patchrec_error_t *error = nullptr;
    patchrec_status_t status = patchrec_train_file(path.c_str(), resume,
                                                   progress ? detail::TrainContext::trampoline : nullptr,
                                                   &context, &error);
    return context.finish(status, error);
}

// Like train_file, with the configuration as TOML text; relative paths in it are taken from
// `base_dir`, or from the working directory when it is empty.
inline bool train_toml(const std::string &toml, const std::string &base_dir = "", bool resume = false,
                       const TrainCallback &progress = nullptr) {
    detail::TrainContext context{&progress, nullptr};
    patchrec_error_t *error = nullptr;
    patchrec_status_t status = patchrec_train_toml(
        toml.c_str(), base_dir.empty() ? nullptr : base_dir.c_str(), resume,
        progress ? detail::TrainContext::trampoline : nullptr, &context, &error);
    return context.finish(status, error);
}

}  // namespace patchrec

#endif  // PATCHREC_HPP
