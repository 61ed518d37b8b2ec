#pragma once
// A least-recently-used cache of classifications keyed by the exact statement text, so a hot
// statement pays for one parse and then a hash lookup.

#include "routing/classifier.hpp"

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pglane::routing {

/// Owns the cached classifications of one worker thread; only that thread may touch it (no
/// locks). Bounded by entry count and by approximate bytes; a statement text longer than
/// `max_statement_bytes` is classified every time and never cached.
class ClassificationCache {
public:
    static constexpr std::size_t default_max_bytes = 8u << 20;
    static constexpr std::size_t default_max_statement_bytes = 64u << 10;

    explicit ClassificationCache(std::size_t max_entries = 4096, std::size_t max_bytes = default_max_bytes,
                                 std::size_t max_statement_bytes = default_max_statement_bytes);
    ClassificationCache(const ClassificationCache&) = delete;
    ClassificationCache& operator=(const ClassificationCache&) = delete;

    /// The classification of `sql`. The reference stays valid until the next call.
    [[nodiscard]] const Classification& classify(std::string_view sql);
    /// A standby refused to run `sql` (an unlogged table, say): from now on it and every
    /// statement of its shape are not read-only, with `reason`. False when not cached.
    bool mark_not_for_standbys(std::string_view sql, std::string_view reason);

    [[nodiscard]] std::uint64_t hits() const { return hits_; }
    [[nodiscard]] std::uint64_t misses() const { return misses_; }
    /// Time spent classifying on misses (parse, decode and walk), in nanoseconds.
    [[nodiscard]] std::uint64_t parse_nanoseconds() const { return parse_nanoseconds_; }
    [[nodiscard]] std::size_t size() const { return index_.size(); }
    [[nodiscard]] std::size_t bytes() const { return bytes_; }

private:
    struct Entry {
        std::string sql;
        Classification classification;
        std::size_t bytes = 0;
    };

    [[nodiscard]] Classification timed_classify(std::string_view sql);
    [[nodiscard]] const Classification* lookup(std::string_view key);
    const Classification& insert(std::string key, Classification classification);
    void evict_until_within_bounds();

    std::size_t max_entries_;
    std::size_t max_bytes_;
    std::size_t max_statement_bytes_;
    std::list<Entry> entries_;  // most recently used first; nodes never move, so keys stay valid
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
    Classification uncached_;  // the answer for a statement too long to cache
    std::string shape_;        // mask_literals' output, reused: a hit allocates nothing
    std::size_t bytes_ = 0;
    std::uint64_t hits_ = 0;
    std::uint64_t misses_ = 0;
    std::uint64_t parse_nanoseconds_ = 0;
};

}  // namespace pglane::routing
