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

}  // namespace pglane::health
