// Recommends the next movie for a sample history with each of PatchRec's layouts, through
// the C++ wrapper of an installed libpatchrec.
//
//   recommend CHECKPOINT_DIR ITEMS_TSV
//
// ITEMS_TSV holds one `item_id<TAB>title` per line.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <patchrec.hpp>

namespace {

// A science-fiction and action fan's history, oldest first (ids in movies.tsv).
const std::vector<std::uint64_t> HISTORY = {5, 7, 6, 8, 22, 24, 25, 23, 27, 26, 10, 12, 45, 47, 48};

struct LayoutChoice {
    const char *name;
    patchrec::Layout kind;
    std::size_t param;
};

const LayoutChoice LAYOUTS[] = {
    {"vanilla", patchrec::Layout::Vanilla, 0},
    {"pft-i:5", patchrec::Layout::PftI, 5},
    {"pft-s:5", patchrec::Layout::PftS, 5},
};

std::vector<std::pair<std::uint64_t, std::string>> read_items(const std::string &path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("cannot open " + path);
    }
    std::vector<std::pair<std::uint64_t, std::string>> items;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (line.empty()) {
            continue;
        }
        std::size_t tab = line.find('\t');
        if (tab == std::string::npos) {
            throw std::runtime_error(path + ":" + std::to_string(number) + ": expected item_id<TAB>title");
        }
        items.emplace_back(std::stoull(line.substr(0, tab)), line.substr(tab + 1));
    }
    return items;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s CHECKPOINT_DIR ITEMS_TSV\n", argv[0]);
        return 2;
    }
    try {
        std::printf("libpatchrec %s\n", patchrec::version().c_str());
        patchrec::Catalog catalog(patchrec::Model::load(argv[1]));
        catalog.add(read_items(argv[2]));
        patchrec::User user;
        user.append(catalog, HISTORY);

        std::printf("catalogue: %zu items\nhistory, oldest first:\n", catalog.size());
        for (std::uint64_t id : HISTORY) {
            std::printf("  %s\n", catalog.title(id).c_str());
        }
        for (const LayoutChoice &layout : LAYOUTS) {
            patchrec::QueryOptions options;
            options.k(10).layout(layout.kind, layout.param);
            patchrec::LayoutStats stats = patchrec::layout_stats(catalog, user, options);
            auto start = std::chrono::steady_clock::now();
            std::vector<patchrec::Recommendation> top = patchrec::recommend(catalog, user, options);
            std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

            std::printf("\n%s: prompt %zu positions, compression ratio %.2f, %.2f s\n", layout.name,
                        stats.prompt_len, stats.compression_ratio, elapsed.count());
            for (std::size_t rank = 0; rank < top.size(); ++rank) {
                std::printf("  %2zu. %-55s %8.3f\n", rank + 1, catalog.title(top[rank].item_id).c_str(),
                            top[rank].score);
            }
        }
    } catch (const patchrec::Error &e) {
        std::fprintf(stderr, "error (%s): %s\n", e.status_name(), e.what());
        return 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
