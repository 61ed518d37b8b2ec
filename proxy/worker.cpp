#include "proxy/worker.hpp"

#include "common/log.hpp"
#include "proxy/auto_session.hpp"
#include "proxy/client_limits.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

namespace pglane::proxy {

namespace {
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Serves one accepted connection with its share of the client limits: the startup phase
// admits the session into `slot` once the startup packet names the user, and the share is
// given back when the session ends, whichever kind of session served it.
asio::awaitable<void> serve_within_limits(StreamSocket socket, ListenerKind kind, SessionServices& services) {
    ClientLimits::Slot slot;
    ClientLimits::Attachment attachment(*services.limits, socket.native_handle(), slot);
    // With an "auth" section pglane authenticates every client itself; the auto port
    // always does (the config refuses it without one). The session is named before it is
    // awaited: no temporaries inside a co_await expression (GCC 12).
    asio::awaitable<void> session = services.secrets ? serve_authenticated_client(std::move(socket), kind, services)
                                                     : serve_client(std::move(socket), kind, services);
    co_await std::move(session);
}
}  // namespace

Worker::Worker(const Config& config, std::function<health::TopologyPtr()> topology, std::function<void()> probe_now,
               CancelRegistry& cancels, std::atomic<std::uint64_t>& read_only_turn, const SecretSources* secrets,
               FunctionCatalogs& catalogs, ClientLimits& limits, const TlsContexts& tls)
    : counters_(health::max_node_slots),
      services_{config,    std::move(topology), std::move(probe_now), cancels,  counters_, read_only_turn,
                registry_, secrets,             classifications_,     catalogs} {
    services_.limits = &limits;
    services_.tls = &tls;
    services_.greetings = &greetings_;
}

Worker::~Worker() {
    io_.stop();
    join();
}

void Worker::listen(ListenerKind kind, const Endpoint& endpoint) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(endpoint.host, ec);
    if (ec) {
        tcp::resolver resolver(io_);
        auto results = resolver.resolve(endpoint.host, std::to_string(endpoint.port), ec);
        if (ec || results.empty())
            throw std::system_error(ec, fmt::format("cannot resolve listen address {}", endpoint.to_string()));
        address = results.begin()->endpoint().address();
    }
    tcp::endpoint where(address, endpoint.port);
    auto acceptor = std::make_unique<tcp::acceptor>(io_);
    acceptor->open(where.protocol());
    acceptor->set_option(tcp::acceptor::reuse_address(true));
    acceptor->set_option(reuse_port(true));
    acceptor->bind(where, ec);
    if (ec) throw std::system_error(ec, fmt::format("cannot listen on {} ({})", endpoint.to_string(), to_string(kind)));
    acceptor->listen(asio::socket_base::max_listen_connections);
    acceptors_.emplace_back(std::move(acceptor), kind);
}

void Worker::listen_unix(ListenerKind kind, int descriptor) {
    const int own = ::fcntl(descriptor, F_DUPFD_CLOEXEC, 0);
    if (own < 0) throw std::system_error(errno, std::generic_category(), "cannot duplicate a Unix-domain listener");
    auto acceptor = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
    boost::system::error_code ec;
    acceptor->assign(asio::local::stream_protocol(), own, ec);
    if (ec) {
        ::close(own);
        throw std::system_error(ec, "cannot accept on a Unix-domain listener");
    }
    unix_acceptors_.emplace_back(std::move(acceptor), kind);
}

void Worker::enable_pooling(PoolStatsRegistry& stats, std::size_t worker_count) {
    pools_ = std::make_unique<ServerPools>(io_.get_executor(), services_.config, counters_, stats, worker_count,
                                           services_.tls->server_facing());
    services_.pools = pools_.get();
}

void Worker::enable_admin(AdminConsole& console, int index) {
    services_.admin = &console;
    services_.resume_gate = &resume_gate_;
    console.add_worker(
        io_.get_executor(),
        [this, index](std::vector<admin::ClientInfo>& clients, std::vector<admin::ServerInfo>& servers) {
            registry_.describe(index, clients, servers);
            if (pools_) pools_->describe(index, servers);
        },
        // Setting the expiry again cancels every wait on the gate: the paused sessions wake.
        [this] { resume_gate_.expires_at(asio::steady_timer::time_point::max()); });
}

void Worker::start() {
    if (pools_) asio::co_spawn(io_, pools_->maintain(), asio::detached);
    for (auto& [acceptor, kind] : acceptors_) asio::co_spawn(io_, accept_loop(*acceptor, kind), asio::detached);
    for (auto& [acceptor, kind] : unix_acceptors_) asio::co_spawn(io_, accept_loop(*acceptor, kind), asio::detached);
    const int busy_poll_us = services_.config.busy_poll_us;
    thread_ = std::thread([this, busy_poll_us] {
        if (busy_poll_us == 0) {
            io_.run();
            return;
        }
        // busy_poll_us: poll for up to that long before sleeping in epoll_wait, so an answer
        // due within microseconds is handled without the sleep and the wake-up (two context
        // switches). Lower latency for a core's worth of CPU: for dedicated cores only.
        using clock = std::chrono::steady_clock;
        while (!io_.stopped()) {   // stopped also once the worker has no work left (shutdown)
            if (io_.poll() > 0) continue;
            const auto until = clock::now() + std::chrono::microseconds(busy_poll_us);
            bool ran = false;
            while (!ran && clock::now() < until) ran = io_.poll() > 0;
            if (!ran) io_.run_one();
        }
    });
}

template <typename Acceptor>
asio::awaitable<void> Worker::accept_loop(Acceptor& acceptor, ListenerKind kind) {
    while (!stopping_) {
        auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
        if (ec) {
            if (ec == asio::error::operation_aborted || stopping_) co_return;
            // Out of file descriptors and the like: log, breathe, keep serving.
            log::error("accept_failed", {{"listener", to_string(kind)}, {"error", ec.message()}});
            asio::steady_timer pause(io_, std::chrono::milliseconds(50));
            co_await pause.async_wait(use_nothrow);
            continue;
        }
        asio::co_spawn(io_, serve_within_limits(std::move(socket), kind, services_), asio::detached);
    }
}

void Worker::publish_topology(health::TopologyPtr topology) {
    asio::post(io_, [this, topology = std::move(topology)] {
        if (pools_) pools_->on_topology(*topology);
        registry_.on_topology(*topology);
    });
}

void Worker::shutdown(Disconnect why) {
    asio::post(io_, [this, why = std::move(why)] {
        stopping_ = true;
        boost::system::error_code ec;
        for (auto& [acceptor, kind] : acceptors_) acceptor->close(ec);
        for (auto& [acceptor, kind] : unix_acceptors_) acceptor->close(ec);
        registry_.close_all(why);
        if (pools_) pools_->stop();
    });
}

void Worker::drain(Disconnect why, std::chrono::milliseconds timeout) {
    asio::post(io_, [this, why = std::move(why), timeout] {
        stopping_ = true;
        boost::system::error_code ec;
        for (auto& [acceptor, kind] : acceptors_) acceptor->close(ec);
        for (auto& [acceptor, kind] : unix_acceptors_) acceptor->close(ec);
        registry_.drain_all(why);
        asio::co_spawn(io_, finish_drain(why, timeout), asio::detached);
    });
}

asio::awaitable<void> Worker::finish_drain(Disconnect why, std::chrono::milliseconds timeout) {
    // Polled, not one long timer: the worker's thread ends as soon as its last session does.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    asio::steady_timer tick(io_);
    while (registry_.size() > 0 && std::chrono::steady_clock::now() < deadline) {
        tick.expires_after(std::chrono::milliseconds(20));
        co_await tick.async_wait(use_nothrow);
    }
    if (registry_.size() > 0) {
        log::info("drain_timeout", {{"sessions", registry_.size()}, {"timeout_ms", timeout.count()}});
        registry_.close_all(why);
    }
    if (pools_) pools_->stop();
}

void Worker::join() {
    if (thread_.joinable()) thread_.join();
}

}  // namespace pglane::proxy
