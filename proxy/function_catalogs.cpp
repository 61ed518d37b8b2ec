#include "proxy/function_catalogs.hpp"

namespace pglane::proxy {

std::shared_ptr<const routing::FunctionCatalog> FunctionCatalogs::find(const std::string& database) const {
    std::lock_guard lock(mutex_);
    auto it = catalogs_.find(database);
    if (it == catalogs_.end() || Clock::now() - it->second.loaded > ttl_) return nullptr;
    return it->second.catalog;
}

void FunctionCatalogs::store(const std::string& database, std::shared_ptr<const routing::FunctionCatalog> catalog) {
    std::lock_guard lock(mutex_);
    catalogs_[database] = Entry{std::move(catalog), Clock::now()};
}

void FunctionCatalogs::invalidate(const std::string& database) {
    std::lock_guard lock(mutex_);
    catalogs_.erase(database);
}

}  // namespace pglane::proxy
