#pragma once
// Function volatility per database, loaded from pg_proc on the primary by the first
// session that needs it and shared by every worker; reloaded after `ttl`.

#include "routing/session_router.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace pglane::proxy {

/// Thread-safe (one mutex; touched once per session and statement batch with functions,
/// never per message).
class FunctionCatalogs {
public:
    using Clock = std::chrono::steady_clock;
    explicit FunctionCatalogs(Clock::duration ttl = std::chrono::seconds(30)) : ttl_(ttl) {}

    /// The catalog of `database` if loaded and fresh, else null (the caller loads it).
    [[nodiscard]] std::shared_ptr<const routing::FunctionCatalog> find(const std::string& database) const;
    void store(const std::string& database, std::shared_ptr<const routing::FunctionCatalog> catalog);
    /// Forget a database's catalog (after DDL that creates or changes functions).
    void invalidate(const std::string& database);

    /// The query that loads one database's catalog: rows of (schema, name, provolatile).
    static constexpr const char* load_query =
        "SELECT n.nspname, p.proname, p.provolatile FROM pg_catalog.pg_proc p "
        "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

private:
    struct Entry {
        std::shared_ptr<const routing::FunctionCatalog> catalog;
        Clock::time_point loaded;
    };
    Clock::duration ttl_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Entry> catalogs_;
};

}  // namespace pglane::proxy
