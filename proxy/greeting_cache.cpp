#include "proxy/greeting_cache.hpp"

#include <algorithm>

namespace pglane::proxy {

std::string GreetingCache::key(std::string_view node, const StartupParameters& startup) {
    StartupParameters sorted = startup;
    std::sort(sorted.begin(), sorted.end());
    // NUL cannot occur inside a startup packet's names and values: it separates them.
    std::string key(node);
    for (const auto& [name, value] : sorted) {
        key += '\0';
        key += name;
        key += '\0';
        key += value;
    }
    return key;
}

const GreetingCache::Parameters* GreetingCache::find(const std::string& key, Clock::time_point now) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || now - it->second.stored >= ttl_) return nullptr;
    return &it->second.parameters;
}

void GreetingCache::remember(const std::string& key, const std::map<std::string, std::string>& parameters,
                             Clock::time_point now) {
    // Bounded: clients with ever new parameters (a unique application_name each) are greeted
    // by the primary, as without the cache.
    if (entries_.size() >= max_entries_ && !entries_.contains(key)) {
        std::erase_if(entries_, [&](const auto& entry) { return now - entry.second.stored >= ttl_; });
        if (entries_.size() >= max_entries_) entries_.clear();
    }
    Entry& entry = entries_[key];
    entry.parameters.assign(parameters.begin(), parameters.end());
    entry.stored = now;
}

}  // namespace pglane::proxy
