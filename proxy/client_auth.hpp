#pragma once
// pglane authenticating a client itself (the auto port, and every port when an "auth"
// section is configured): SCRAM-SHA-256, md5 or trust against the users file or
// auth.query, and recovering what pglane needs to log in to servers on the client's behalf.

#include "proxy/byte_buffer.hpp"
#include "proxy/client_session.hpp"
#include "proxy/server_connection.hpp"
#include "proxy/users_file.hpp"

#include <boost/asio.hpp>

#include <memory>
#include <optional>
#include <atomic>
#include <memory>
#include <string>

namespace pglane::proxy {

/// Where stored secrets come from; shared by all workers. The users file may be replaced
/// by a reload (SIGHUP) while sessions read it: each lookup takes the current one.
struct SecretSources {
    AuthSettings settings;
    std::atomic<std::shared_ptr<const UsersFile>> users;   // may be null when only auth.query is used
};

struct ClientAuthResult {
    std::optional<Disconnect> stop;           // set when the client is refused
    ServerCredentials credentials;
};

/// Runs the exchange on `client` (bytes already received are in `in`). The primary is
/// asked through auth.query when the users file does not know `user`. Nothing is sent to
/// any server on the client's behalf before this succeeds.
[[nodiscard]] boost::asio::awaitable<ClientAuthResult> authenticate_client(
    Stream& client, ByteBuffer& in, const SecretSources& sources, std::string_view user,
    std::optional<health::NodeAddress> primary, const Limits& limits, SSL_CTX* tls);

}  // namespace pglane::proxy
