#include "proxy/unix_listener.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <grp.h>
#include <optional>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace pglane::proxy {

namespace {

[[noreturn]] void fail(int error, const std::string& what) {
    throw std::system_error(error, std::generic_category(), what);
}

sockaddr_un address_of(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) fail(ENAMETOOLONG, "socket path " + path);
    std::memcpy(address.sun_path, path.data(), path.size());
    return address;
}

gid_t group_id(const std::string& name) {
    group entry{};
    group* found = nullptr;
    std::vector<char> buffer(16384);
    const int error = ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (error != 0) fail(error, "cannot look up group \"" + name + "\" (listen.unix_socket_group)");
    if (found == nullptr) fail(ENOENT, "no group \"" + name + "\" (listen.unix_socket_group)");
    return entry.gr_gid;
}

/// Whether something accepts connections on the socket file at `address`.
bool in_use(const sockaddr_un& address) {
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return false;
    const bool connected = ::connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
    ::close(probe);
    return connected;
}

}  // namespace

UnixListener::UnixListener(const std::string& directory, std::uint16_t port, unsigned mode, const std::string& group)
    : path_(fmt::format("{}/.s.PGSQL.{}", directory, port)) {
    const sockaddr_un address = address_of(path_);
    const std::optional<gid_t> gid = group.empty() ? std::nullopt : std::optional(group_id(group));
    descriptor_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (descriptor_ < 0) fail(errno, "cannot create a Unix-domain socket");
    auto bind_it = [&] {
        return ::bind(descriptor_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
    };
    bool bound = bind_it();
    if (!bound && errno == EADDRINUSE && !in_use(address) && ::unlink(path_.c_str()) == 0) bound = bind_it();
    const int error = errno;
    if (!bound) {
        ::close(descriptor_);
        fail(error, error == EADDRINUSE ? "cannot listen on " + path_ + ": something accepts on it already"
                                        : "cannot listen on " + path_);
    }
    // Who may connect is the file's mode and group (and the directory's), as for PostgreSQL's
    // socket.
    if ((gid && ::chown(path_.c_str(), static_cast<uid_t>(-1), *gid) != 0) ||
        ::chmod(path_.c_str(), static_cast<mode_t>(mode)) != 0 || ::listen(descriptor_, SOMAXCONN) != 0) {
        const int failed = errno;
        ::close(descriptor_);
        ::unlink(path_.c_str());
        fail(failed, "cannot listen on " + path_);
    }
}

UnixListener::~UnixListener() {
    ::close(descriptor_);
    ::unlink(path_.c_str());
}

}  // namespace pglane::proxy
