#include "routing/classification_cache.hpp"

#include <algorithm>
#include <chrono>

#include "routing/literal_mask.hpp"

namespace pglane::routing {
namespace {

/// Approximate heap footprint of one entry: texts plus container overhead.
std::size_t footprint(const std::string& sql, const Classification& c) {
    constexpr std::size_t overhead = sizeof(Classification) + 96;  // list node, index slot
    std::size_t bytes = overhead + sql.size() + c.reason.size() + c.prepare_name.size() +
                        c.execute_name.size() + c.deallocate_name.size();
    for (const std::string& function : c.functions) bytes += sizeof(std::string) + function.size();
    if (c.pglane_setting_name) bytes += c.pglane_setting_name->size();
    if (c.pglane_setting_value) bytes += c.pglane_setting_value->size();
    return bytes;
}

}  // namespace

ClassificationCache::ClassificationCache(std::size_t max_entries, std::size_t max_bytes,
                                         std::size_t max_statement_bytes)
    : max_entries_(std::max<std::size_t>(max_entries, 1)),
      max_bytes_(max_bytes),
      max_statement_bytes_(max_statement_bytes) {
    index_.reserve(std::min<std::size_t>(max_entries_, 1u << 16));
}

Classification ClassificationCache::timed_classify(std::string_view sql) {
    const auto started = std::chrono::steady_clock::now();
    Classification result = routing::classify(sql);
    const auto elapsed = std::chrono::steady_clock::now() - started;
    parse_nanoseconds_ += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
    return result;
}

namespace {

// A shape's classification stands for every statement of that shape only when literal
// values cannot change it: not for SET and friends (values are replayed and answered),
// pglane settings, transaction control, PREPARE/EXECUTE/DEALLOCATE names, pins (advisory
// lock keys) or anything the parser refused in its masked form.
bool shape_decides(const Classification& c) {
    return c.parsed && !c.session_state && !c.pglane_setting_name && c.transaction == TransactionControl::none &&
           c.prepare_name.empty() && c.execute_name.empty() && c.deallocate_name.empty() && !c.deallocate_all &&
           c.pin == PinReason::none;
}

}  // namespace

const Classification* ClassificationCache::lookup(std::string_view key) {
    const auto found = index_.find(key);
    if (found == index_.end()) return nullptr;
    entries_.splice(entries_.begin(), entries_, found->second);  // now the most recent
    return &found->second->classification;
}

const Classification& ClassificationCache::classify(std::string_view sql) {
    if (const Classification* c = lookup(sql)) {
        ++hits_;
        return *c;
    }
    const bool shaped = sql.size() <= max_statement_bytes_ && mask_literals(sql, shape_);
    if (shaped) {
        if (const Classification* c = lookup(shape_)) {
            ++hits_;
            return *c;
        }
    }
    ++misses_;
    if (sql.size() > max_statement_bytes_) {
        uncached_ = timed_classify(sql);
        return uncached_;
    }
    if (shaped) {
        Classification by_shape = timed_classify(shape_);
        if (shape_decides(by_shape)) return insert(shape_, std::move(by_shape));
    }
    return insert(std::string(sql), timed_classify(sql));
}

bool ClassificationCache::mark_not_for_standbys(std::string_view sql, std::string_view reason) {
    auto found = index_.find(sql);
    if (found == index_.end() && sql.size() <= max_statement_bytes_ && mask_literals(sql, shape_))
        found = index_.find(std::string_view(shape_));
    if (found == index_.end()) return false;
    Entry& entry = *found->second;
    entry.classification.read_only = false;
    entry.classification.reason.assign(reason);
    bytes_ -= entry.bytes;
    entry.bytes = footprint(entry.sql, entry.classification);
    bytes_ += entry.bytes;
    return true;
}

const Classification& ClassificationCache::insert(std::string key, Classification classification) {
    Entry entry;
    entry.sql = std::move(key);
    entry.classification = std::move(classification);
    entry.bytes = footprint(entry.sql, entry.classification);
    entries_.push_front(std::move(entry));
    bytes_ += entries_.front().bytes;
    index_.emplace(std::string_view(entries_.front().sql), entries_.begin());
    evict_until_within_bounds();
    return entries_.front().classification;
}

void ClassificationCache::evict_until_within_bounds() {
    // The newest entry always stays, even alone over the byte bound, so its reference is valid.
    while (entries_.size() > 1 && (entries_.size() > max_entries_ || bytes_ > max_bytes_)) {
        const Entry& oldest = entries_.back();
        index_.erase(std::string_view(oldest.sql));
        bytes_ -= oldest.bytes;
        entries_.pop_back();
    }
}

}  // namespace pglane::routing
