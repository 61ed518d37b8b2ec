#include "health/topology.hpp"

namespace pglane::health {

std::string_view to_string(Role role) {
    switch (role) {
        case Role::unknown: return "unknown";
        case Role::primary: return "primary";
        case Role::standby: return "standby";
    }
    return "unknown";
}

std::string_view to_string(SslMode mode) {
    switch (mode) {
        case SslMode::disable: return "disable";
        case SslMode::prefer: return "prefer";
        case SslMode::require: return "require";
        case SslMode::verify_ca: return "verify-ca";
        case SslMode::verify_full: return "verify-full";
    }
    return "prefer";
}

}  // namespace pglane::health
