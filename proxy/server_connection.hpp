#pragma once
// A connection pglane opens to a server on a client's behalf and logs in to itself (the
// auto port, and every port when pglane authenticates clients). It can also run statements
// of pglane's own ("hidden" queries: replaying SET, preparing statements, reading LSNs)
// whose results never reach the client.

#include "health/topology.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/scram.hpp"
#include "proxy/byte_buffer.hpp"
#include "proxy/config.hpp"
#include "proxy/stream.hpp"

#include <boost/asio.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pglane::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

/// What pglane logs in with, recovered from the client's own authentication: a password,
/// an md5 hash (md5 servers only), or a SCRAM ClientKey with the verifier it belongs to.
struct ServerCredentials {
    std::string password;
    std::string md5_hash;
    protocol::scram::ClientSecret scram;
};

/// The result of a hidden query: rows of text values, or the server's error.
struct HiddenResult {
    bool ok = false;
    std::vector<std::vector<std::optional<std::string>>> rows;
    protocol::ErrorFields error;
};

/// Why opening or using a server connection failed, for the client's ErrorResponse.
struct ServerFailure {
    std::string sqlstate;
    std::string message;
};

/// Owned by one session, touched by that session's worker thread only.
class ServerConnection {
public:
    /// `tls` (null: plaintext) is used as `address.sslmode` asks.
    ServerConnection(asio::any_io_executor executor, std::size_t node, health::NodeAddress address,
                     const Limits& limits, SSL_CTX* tls);

    /// Connects (TLS negotiated as the node's sslmode asks) and logs in with the client's startup parameters. On success the
    /// ParameterStatus values and BackendKeyData are kept; nullopt means success.
    [[nodiscard]] asio::awaitable<std::optional<ServerFailure>> open(
        const std::vector<std::pair<std::string, std::string>>& startup_parameters, const ServerCredentials& credentials);

    /// Runs one simple-protocol statement of pglane's own and drains its results up to
    /// ReadyForQuery. Only valid while the connection is idle between client units.
    [[nodiscard]] asio::awaitable<HiddenResult> hidden_query(std::string_view sql);

    [[nodiscard]] asio::awaitable<bool> write(std::string_view bytes);
    /// write() without its coroutine, for the hot path: true when the write is over (`ok`:
    /// all of `bytes` went; false: the connection broke). False: co_await finish_write().
    [[nodiscard]] bool write_at_once(std::string_view bytes, bool& ok);
    [[nodiscard]] asio::awaitable<bool> finish_write();

    /// Whether a connection idle between units can still be used: false when the server
    /// closed it or said something other than an asynchronous message (a FATAL before
    /// closing, for instance). Asynchronous messages are kept in pending_async().
    [[nodiscard]] bool usable_after_idle();

    /// NotificationResponse/NoticeResponse messages that arrived while pglane ran its own
    /// statements or while the connection sat idle: the client gets them with its next
    /// results.
    [[nodiscard]] std::string take_pending_async() { return std::exchange(pending_async_, {}); }

    /// Reads more bytes into `in()`; false when the connection broke.
    /// `ready_owed`: how many ReadyForQuery messages the server still owes for what pglane
    /// sent, counted from the front of in() (a message boundary); 0 when not known. Once
    /// they are all read, the connection's next read waits without trying first.
    [[nodiscard]] asio::awaitable<bool> read_more(std::size_t ready_owed = 0);

    [[nodiscard]] std::size_t node() const { return node_; }
    [[nodiscard]] const health::NodeAddress& address() const { return address_; }
    [[nodiscard]] ByteBuffer& in() { return in_; }
    [[nodiscard]] Stream& stream() { return stream_; }
    [[nodiscard]] const Stream& stream() const { return stream_; }
    [[nodiscard]] bool broken() const { return broken_; }
    void mark_broken();
    void close();
    /// Ends the session politely (Terminate, without waiting) when the connection is sound,
    /// so the server does not log a lost client; then closes it.
    void terminate();

    [[nodiscard]] const std::map<std::string, std::string>& parameters() const { return parameters_; }
    [[nodiscard]] protocol::BackendKey backend_key() const { return backend_key_; }

    /// Prepared statements this connection holds: name -> the session's version of it.
    std::unordered_map<std::string, std::uint64_t> statements;
    /// SQL-level PREPAREd statements this connection holds: name -> version.
    std::unordered_map<std::string, std::uint64_t> sql_statements;
    /// How many of the session's SET statements this connection has applied.
    std::size_t settings_applied = 0;
    /// A replay LSN this standby is known to have reached (read-your-writes).
    std::uint64_t known_replay_lsn = 0;

    // Transaction pooling (proxy/server_pool.hpp): what a pooled connection carries between
    // the clients it serves.
    /// The set_config() statement that applied the current client's startup parameters here
    /// (empty: the server's defaults, as after login or RESET ALL).
    std::string applied_startup;
    /// False from the moment a client unit is written until its last ReadyForQuery: a
    /// connection returned in between is discarded, never lent again.
    bool between_units = true;
    protocol::TransactionStatus ready_status = protocol::TransactionStatus::idle;
    std::chrono::steady_clock::time_point opened_at = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point idle_since = opened_at;
    void drop_pending_async() { pending_async_.clear(); }

private:
    /// Reads what the server sent while the connection idled, without waiting: false when
    /// the connection broke (or the buffer is full).
    [[nodiscard]] bool read_what_arrived();
    [[nodiscard]] asio::awaitable<std::optional<protocol::Frame>> read_frame(std::uint32_t max);
    [[nodiscard]] asio::awaitable<std::optional<ServerFailure>> authenticate(const ServerCredentials& credentials);
    [[nodiscard]] asio::awaitable<std::optional<ServerFailure>> answer_sasl(protocol::Bytes mechanisms,
                                                                            const ServerCredentials& credentials);
    [[nodiscard]] ServerFailure failure(std::string_view sqlstate, std::string message) const;

    std::size_t node_;
    health::NodeAddress address_;
    const Limits& limits_;
    SSL_CTX* tls_;
    Stream stream_;
    ByteBuffer in_;
    std::map<std::string, std::string> parameters_;
    protocol::BackendKey backend_key_;
    bool broken_ = false;
    std::string pending_async_;
};

}  // namespace pglane::proxy
