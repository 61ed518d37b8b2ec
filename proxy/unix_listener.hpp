#pragma once
// A port's Unix-domain socket (listen.unix_socket_dir): "<dir>/.s.PGSQL.<port>", the name
// PostgreSQL gives its own, so a client on the host reaches pglane with host=<dir> and the
// port's number, as it would reach a server there. Cheaper for the kernel than loopback TCP.

#include <cstdint>
#include <string>

namespace pglane::proxy {

/// The listening socket, bound and listening from construction to destruction, when its file
/// is removed. Every worker accepts on a dup() of it (Unix-domain sockets have no
/// SO_REUSEPORT to give each worker a socket of its own).
class UnixListener {
public:
    /// Throws std::system_error naming the path. A socket file left by a process that is gone
    /// (nothing accepts on it) is replaced; one something still accepts on is not. The file
    /// gets `mode`, and `group` (a group name) when not empty.
    UnixListener(const std::string& directory, std::uint16_t port, unsigned mode, const std::string& group = {});
    ~UnixListener();
    UnixListener(const UnixListener&) = delete;
    UnixListener& operator=(const UnixListener&) = delete;

    [[nodiscard]] int descriptor() const { return descriptor_; }
    [[nodiscard]] const std::string& path() const { return path_; }

private:
    std::string path_;
    int descriptor_ = -1;
};

}  // namespace pglane::proxy
