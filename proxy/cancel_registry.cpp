#include "proxy/cancel_registry.hpp"

#include <openssl/rand.h>

#include <stdexcept>

namespace pglane::proxy {

protocol::BackendKey CancelRegistry::add(CancelTarget target) {
    std::uint32_t secret = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&secret), sizeof secret) != 1) {
        throw std::runtime_error("OpenSSL RAND_bytes failed");
    }
    std::lock_guard lock(mutex_);
    std::uint32_t process_id = next_process_id_;
    // Skip 0 and ids still in use after wrap-around.
    while (process_id == 0 || targets_.contains(process_id)) ++process_id;
    next_process_id_ = process_id + 1;
    targets_.emplace(process_id, std::pair{secret, std::move(target)});
    return {process_id, secret};
}

void CancelRegistry::remove(protocol::BackendKey client_key) {
    std::lock_guard lock(mutex_);
    auto it = targets_.find(client_key.process_id);
    if (it != targets_.end() && it->second.first == client_key.secret_key) targets_.erase(it);
}

void CancelRegistry::update(protocol::BackendKey client_key, CancelTarget target) {
    std::lock_guard lock(mutex_);
    auto it = targets_.find(client_key.process_id);
    if (it != targets_.end() && it->second.first == client_key.secret_key) it->second.second = std::move(target);
}

std::optional<CancelTarget> CancelRegistry::find(protocol::BackendKey client_key) const {
    std::lock_guard lock(mutex_);
    auto it = targets_.find(client_key.process_id);
    if (it == targets_.end() || it->second.first != client_key.secret_key) return std::nullopt;
    return it->second.second;
}

std::size_t CancelRegistry::size() const {
    std::lock_guard lock(mutex_);
    return targets_.size();
}

}  // namespace pglane::proxy
