#pragma once
// A worker thread: its own io_context, its own listening socket per port (SO_REUSEPORT,
// so the kernel spreads connections), and every session it accepted for their whole life.

#include "proxy/admin_console.hpp"
#include "proxy/client_session.hpp"
#include "proxy/greeting_cache.hpp"
#include "proxy/server_pool.hpp"

#include <boost/asio.hpp>

#include <memory>
#include <thread>
#include <vector>

namespace pglane::proxy {

/// Owns one io_context and everything on it. Other threads reach it only through post().
class Worker {
public:
    Worker(const Config& config, std::function<health::TopologyPtr()> topology, std::function<void()> probe_now,
           CancelRegistry& cancels, std::atomic<std::uint64_t>& read_only_turn, const SecretSources* secrets,
           FunctionCatalogs& catalogs, ClientLimits& limits,
           const TlsContexts& tls);
    ~Worker();

    /// Binds `endpoint` for `kind`. Throws std::system_error naming the address on failure.
    void listen(ListenerKind kind, const Endpoint& endpoint);
    /// Accepts for `kind` on a dup() of the Unix-domain socket `descriptor` (a UnixListener's,
    /// which outlives the worker). Throws std::system_error.
    void listen_unix(ListenerKind kind, int descriptor);
    /// Transaction pooling (pool.mode): this worker's share of the pools. Before start().
    void enable_pooling(PoolStatsRegistry& stats, std::size_t worker_count);
    /// The admin console (admin.users): sessions may open it, it may describe this worker's
    /// sessions and pools (as worker `index`). Before start().
    void enable_admin(AdminConsole& console, int index);
    void start();
    /// Thread-safe: fences rw sessions whose primary changed.
    void publish_topology(health::TopologyPtr topology);
    /// Thread-safe: stop accepting and close every session with `why`.
    void shutdown(Disconnect why);
    /// Thread-safe: stop accepting, close each session with `why` once it is outside a
    /// transaction, and the rest after `timeout`.
    void drain(Disconnect why, std::chrono::milliseconds timeout);
    void join();

    [[nodiscard]] const Counters& counters() const { return counters_; }
    [[nodiscard]] const routing::ClassificationCache& classifications() const { return classifications_; }

private:
    template <typename Acceptor>
    asio::awaitable<void> accept_loop(Acceptor& acceptor, ListenerKind kind);
    asio::awaitable<void> finish_drain(Disconnect why, std::chrono::milliseconds timeout);

    // One thread runs it, and only that thread does I/O on its sockets (others post()): the
    // reactor need not lock each socket for every operation. Posting still locks.
    asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    Counters counters_;
    SessionRegistry registry_;
    routing::ClassificationCache classifications_;
    GreetingCache greetings_;
    SessionServices services_;
    std::vector<std::pair<std::unique_ptr<tcp::acceptor>, ListenerKind>> acceptors_;
    std::vector<std::pair<std::unique_ptr<asio::local::stream_protocol::acceptor>, ListenerKind>> unix_acceptors_;
    std::unique_ptr<ServerPools> pools_;
    // Sessions paused by the admin console wait on it; RESUME re-arms it, which wakes them.
    asio::steady_timer resume_gate_{io_, asio::steady_timer::time_point::max()};
    std::thread thread_;
    bool stopping_ = false;
};

}  // namespace pglane::proxy
