#pragma once
// One client connection, served by one coroutine top to bottom: startup packets (TLS when
// the client asks and pglane has a certificate), node choice, server connection (TLS as the
// node's sslmode asks), relayed authentication, then the relay loop, and a disconnect that
// always carries a reason.

#include "health/topology.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "proxy/admin_commands.hpp"
#include "proxy/byte_buffer.hpp"
#include "proxy/config.hpp"
#include "proxy/counters.hpp"
#include "proxy/stream.hpp"
#include "routing/classification_cache.hpp"

#include <boost/asio.hpp>

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>

namespace pglane::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class AdminConsole;
class CancelRegistry;
class ServerPools;
class ClientLimits;
class FunctionCatalogs;
class GreetingCache;
struct SecretSources;

/// The free space of a receive buffer as an Asio buffer.
[[nodiscard]] inline asio::mutable_buffer free_buffer(ByteBuffer& in) {
    auto space = in.free_space();
    return {space.data(), space.size()};
}
class SessionRegistry;

/// Why a session ended. An empty sqlstate closes quietly (the client left, or already got
/// the server's own ErrorResponse); otherwise the client gets a FATAL ErrorResponse.
struct Disconnect {
    std::string sqlstate;
    std::string message;
    std::string reason;   // short key=value-friendly cause for the log
    /// False for failures of one unit of statements (no primary within failover.hold_ms, the
    /// server of a transaction lost): the client gets an ERROR and the session goes on.
    bool ends_session = true;

    [[nodiscard]] static Disconnect quiet(std::string reason) { return {{}, {}, std::move(reason)}; }
    [[nodiscard]] static Disconnect unit_error(std::string_view sqlstate, std::string message, std::string reason) {
        return {std::string(sqlstate), std::move(message), std::move(reason), false};
    }
};

/// What a worker lends each of its sessions. All references outlive the sessions.
struct SessionServices {
    const Config& config;
    std::function<health::TopologyPtr()> topology;
    std::function<void()> probe_now;               // asks the health checker for a round now
    CancelRegistry& cancels;
    Counters& counters;
    std::atomic<std::uint64_t>& read_only_turn;   // shared by all workers: one rotation
    SessionRegistry& registry;
    const SecretSources* secrets;                 // null: no "auth" section
    routing::ClassificationCache& classifications; // worker-local
    FunctionCatalogs& catalogs;                   // shared by all workers
    std::uint64_t next_session_id = 1;            // worker-local
    ClientLimits* limits = nullptr;               // shared by all workers; null: nothing counted
    ServerPools* pools = nullptr;                 // worker-local; null: no transaction pooling
    GreetingCache* greetings = nullptr;           // worker-local; null: auto logins all greeted by the primary
    AdminConsole* admin = nullptr;                // shared by all workers; null: no admin.users
    asio::steady_timer* resume_gate = nullptr;    // worker-local: paused sessions wait on it
    const TlsContexts* tls = nullptr;             // shared by all workers; null: plaintext only

    /// The context pglane connects to servers with (null: plaintext).
    [[nodiscard]] SSL_CTX* server_tls() const;
};

/// What the worker's registry can ask of any session: fencing on topology changes and
/// shutdown. Touched by the session's worker thread only.
class FenceableSession {
public:
    virtual ~FenceableSession() = default;
    /// Ends the session with `why` at the next opportunity.
    virtual void fence(Disconnect why) = 0;
    /// Fences the session if it writes through a node that is no longer the elected primary.
    virtual void on_topology(const health::Topology& topology) = 0;
    /// Ends the session with `why` once it is outside any transaction (now, if it is).
    virtual void drain(Disconnect why) = 0;
    /// Adds this session, and the server connections it holds, to an admin console snapshot.
    virtual void describe(int worker, std::vector<admin::ClientInfo>& clients,
                          std::vector<admin::ServerInfo>& servers) const = 0;
};

/// One relayed client session (rw and ro ports without an "auth" section: the server
/// authenticates the client). Lives in its coroutine's frame; owned by one worker thread.
class ClientSession final : public FenceableSession {
public:
    ClientSession(StreamSocket client, ListenerKind kind, SessionServices& services);
    ~ClientSession();
    ClientSession(const ClientSession&) = delete;
    ClientSession& operator=(const ClientSession&) = delete;

    asio::awaitable<void> run();

    void fence(Disconnect why) override;
    void on_topology(const health::Topology& topology) override;
    void drain(Disconnect why) override;
    void describe(int worker, std::vector<admin::ClientInfo>& clients,
                  std::vector<admin::ServerInfo>& servers) const override;

private:
    asio::awaitable<std::optional<Disconnect>> startup();
    asio::awaitable<std::optional<Disconnect>> read_startup_packet(std::string& startup_packet, bool& cancel_handled);
    asio::awaitable<std::optional<Disconnect>> connect_with_hold();
    asio::awaitable<std::optional<Disconnect>> connect_to_node(const health::Topology& topology);
    asio::awaitable<bool> open_server_connection(const health::NodeStatus& node);
    asio::awaitable<std::optional<Disconnect>> relay_authentication();
    asio::awaitable<Disconnect> relay();
    asio::awaitable<Disconnect> client_to_server();
    asio::awaitable<Disconnect> server_to_client();
    asio::awaitable<Disconnect> wait_for_fence();
    asio::awaitable<void> finish(const Disconnect& why);

    [[nodiscard]] asio::awaitable<bool> write_all(Stream& stream, std::string_view bytes);
    [[nodiscard]] std::string node_name() const;

    SessionServices& services_;
    ListenerKind kind_;
    std::uint64_t id_;
    Stream client_;
    Stream server_;
    ByteBuffer client_in_;
    ByteBuffer server_in_;
    std::string scratch_;
    std::string peer_;
    std::optional<std::size_t> node_;
    health::NodeAddress node_address_;
    std::uint64_t primary_term_ = 0;
    bool pinned_to_primary_ = false;
    std::optional<protocol::BackendKey> client_key_;
    protocol::TransactionStatus transaction_ = protocol::TransactionStatus::idle;
    char last_server_tag_ = 0;
    std::size_t ready_owed_ = 0;   // ReadyForQuery messages the server owes for what was relayed
    bool client_terminated_ = false;
    bool server_connected_ = false;
    asio::steady_timer fence_timer_;
    std::optional<Disconnect> fence_;
    std::optional<Disconnect> drain_;
};

/// The sessions of one worker, so a topology change or shutdown can reach them.
/// Touched by that worker's thread only.
class SessionRegistry {
public:
    void add(FenceableSession* session) { sessions_.insert(session); }
    void remove(FenceableSession* session) { sessions_.erase(session); }
    void on_topology(const health::Topology& topology);
    void close_all(const Disconnect& why);
    void drain_all(const Disconnect& why);
    void describe(int worker, std::vector<admin::ClientInfo>& clients, std::vector<admin::ServerInfo>& servers) const;
    [[nodiscard]] std::size_t size() const { return sessions_.size(); }

private:
    std::unordered_set<FenceableSession*> sessions_;
};

/// Serves one accepted connection; the coroutine frame owns the session.
asio::awaitable<void> serve_client(StreamSocket socket, ListenerKind kind, SessionServices& services);

}  // namespace pglane::proxy
