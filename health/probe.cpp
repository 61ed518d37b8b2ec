// The I/O half of the probe: libpq's asynchronous API on the health thread's io_context.
// libpq owns the socket; Asio only watches it (assign/release, never close).
// https://www.postgresql.org/docs/15/libpq-async.html

#include "health/probe.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <libpq-fe.h>
#include <poll.h>

namespace pglane::health {
namespace asio = boost::asio;
using asio::use_awaitable;

namespace {

constexpr auto as_values = asio::as_tuple(use_awaitable);

struct ResultDeleter {
    void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

[[nodiscard]] std::string trimmed(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
}

// The rows of one result as text values (NULL -> nullopt). A result without rows (a
// command) leaves `rows` as it was, so the last query's rows are what a caller sees.
[[nodiscard]] std::string take_rows(const PGresult* result, std::vector<ProbeRow>& rows) {
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_COMMAND_OK) return {};
    if (status != PGRES_TUPLES_OK) return trimmed(PQresultErrorMessage(result));
    rows.clear();
    for (int r = 0; r < PQntuples(result); ++r) {
        ProbeRow& row = rows.emplace_back();
        for (int i = 0; i < PQnfields(result); ++i) {
            if (PQgetisnull(result, r, i)) {
                row.emplace_back();
            } else {
                row.emplace_back(std::string(PQgetvalue(result, r, i), PQgetlength(result, r, i)));
            }
        }
    }
    return {};
}

// Asio's epoll registration is edge-triggered and plain waits are never speculative, so a
// socket that is already readable is checked here rather than trusted to produce an edge.
[[nodiscard]] bool ready_now(int fd, bool for_write) {
    pollfd entry{fd, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    return ::poll(&entry, 1, 0) > 0;
}

}  // namespace

/// A name lookup on Asio's resolver thread. Shared with the completion handler so the
/// probe can give up at its deadline while getaddrinfo is still running.
struct NodeProbe::Resolve {
    explicit Resolve(const asio::any_io_executor& executor) : resolver(executor), done(executor) {}
    asio::ip::tcp::resolver resolver;
    asio::steady_timer done;
    bool finished = false;
    boost::system::error_code error;
    std::string address;
};

NodeProbe::NodeProbe(asio::any_io_executor executor, NodeAddress node, Settings settings)
    : executor_(executor),
      node_(std::move(node)),
      settings_(std::move(settings)),
      socket_(executor),
      deadline_(executor) {}

NodeProbe::~NodeProbe() { close(); }

void NodeProbe::close() {
    // Asio must forget the fd before libpq closes it: Asio never closes libpq's socket.
    if (socket_.is_open()) (void)socket_.release();
    if (connection_ != nullptr) {
        PQfinish(connection_);
        connection_ = nullptr;
    }
}

void NodeProbe::abort() {
    aborted_ = true;
    boost::system::error_code ignored;
    socket_.cancel(ignored);
    if (pending_resolve_) pending_resolve_->done.cancel();
}

asio::awaitable<Observation> NodeProbe::probe() {
    const auto started = Clock::now();
    arm_deadline(std::chrono::milliseconds(settings_.probe_timeout_ms()));
    std::vector<ProbeRow> rows;
    const std::string sql(probe_sql());
    const bool reused = connection_ != nullptr;
    std::string error = co_await run_query(sql, rows);
    if (!error.empty() && reused && !timed_out_ && !aborted_) {
        // A kept connection can die between rounds (server restart, idle timeout); one
        // fresh attempt within the same deadline tells that apart from a node that is down.
        close();
        error = co_await run_query(sql, rows);
    }
    deadline_.cancel();
    if (error.empty() && rows.size() != 1) {
        error = fmt::format("probe query returned {} rows", rows.size());
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (!error.empty()) {
        close();
        co_return Observation::failure(std::move(error), seconds);
    }
    Observation observation = parse_probe_row(rows.front());
    observation.probe_seconds = seconds;
    co_return observation;
}

asio::awaitable<QueryResult> NodeProbe::execute(std::string sql, std::chrono::milliseconds timeout) {
    arm_deadline(timeout);
    QueryResult result;
    result.error = co_await run_query(sql, result.rows);
    deadline_.cancel();
    if (!result.error.empty()) close();
    co_return result;
}

void NodeProbe::arm_deadline(std::chrono::milliseconds timeout) {
    timed_out_ = false;
    timeout_ = timeout;
    deadline_at_ = Clock::now() + timeout;
    deadline_.expires_at(deadline_at_);
    deadline_.async_wait([this, generation = ++probe_generation_](boost::system::error_code ec) {
        if (ec || generation != probe_generation_) return;
        timed_out_ = true;
        socket_.cancel(ec);
        if (pending_resolve_) pending_resolve_->done.cancel();
    });
}

std::string NodeProbe::deadline_error() const {
    if (aborted_) return "probe aborted: health checker stopping";
    if (timed_out_ || Clock::now() >= deadline_at_) {
        return fmt::format("timed out after {} ms", timeout_.count());
    }
    return {};
}

asio::awaitable<std::string> NodeProbe::run_query(const std::string& sql, std::vector<ProbeRow>& rows) {
    if (connection_ == nullptr) {
        if (auto error = co_await connect(); !error.empty()) co_return error;
    }
    if (auto error = co_await send_query(sql); !error.empty()) co_return error;
    co_return co_await read_rows(rows);
}

asio::awaitable<std::string> NodeProbe::connect() {
    std::string hostaddr;
    if (auto error = co_await resolve(hostaddr); !error.empty()) co_return error;
    const std::string conninfo = connection_string(node_, settings_, hostaddr);
    connection_ = PQconnectStart(conninfo.c_str());
    if (connection_ == nullptr) co_return "libpq could not allocate a connection";
    if (PQstatus(connection_) == CONNECTION_BAD) co_return libpq_error();
    // libpq's documented loop: start as if PQconnectPoll had asked to wait for writing.
    PostgresPollingStatusType status = PGRES_POLLING_WRITING;
    while (status != PGRES_POLLING_OK) {
        if (status == PGRES_POLLING_FAILED) co_return libpq_error();
        // Any step may open a new socket (next address, SSL fallback) whose fd number can
        // equal the closed one's, so the descriptor is registered afresh on every step.
        if (auto error = watch_socket(true); !error.empty()) co_return error;
        if (auto error = co_await wait(status == PGRES_POLLING_WRITING); !error.empty()) {
            co_return error;
        }
        status = PQconnectPoll(connection_);
    }
    if (PQsetnonblocking(connection_, 1) != 0) co_return libpq_error();
    co_return watch_socket(true);
}

// libpq resolves host names with a blocking getaddrinfo; resolving here on Asio's
// resolver thread and handing libpq the numeric hostaddr keeps the health loop free.
asio::awaitable<std::string> NodeProbe::resolve(std::string& hostaddr) {
    // libpq finds a socket directory (or its default one, for an empty host) itself.
    if (node_.host.empty() || node_.on_unix_socket()) co_return std::string{};
    boost::system::error_code numeric_error;
    (void)asio::ip::make_address(node_.host, numeric_error);
    if (!numeric_error) co_return std::string{};
    auto state = std::make_shared<Resolve>(executor_);
    pending_resolve_ = state;
    state->done.expires_at(deadline_at_);
    state->resolver.async_resolve(
        node_.host, std::to_string(node_.port),
        [state](boost::system::error_code ec, asio::ip::tcp::resolver::results_type results) {
            state->finished = true;
            state->error = ec;
            if (!ec && !results.empty()) {
                state->address = results.begin()->endpoint().address().to_string();
            }
            state->done.cancel();
        });
    (void)co_await state->done.async_wait(as_values);
    pending_resolve_.reset();
    if (!state->finished) {
        state->resolver.cancel();
        auto error = deadline_error();
        co_return error.empty() ? std::string("name lookup interrupted") : error;
    }
    if (state->error) {
        co_return fmt::format("could not resolve {}: {}", node_.host, state->error.message());
    }
    if (state->address.empty()) co_return fmt::format("no address for {}", node_.host);
    hostaddr = state->address;
    co_return std::string{};
}

asio::awaitable<std::string> NodeProbe::send_query(const std::string& sql) {
    if (PQstatus(connection_) != CONNECTION_OK) co_return libpq_error();
    if (PQsendQuery(connection_, sql.c_str()) == 0) co_return libpq_error();
    for (;;) {
        const int flushed = PQflush(connection_);
        if (flushed == 0) co_return std::string{};
        if (flushed < 0) co_return libpq_error();
        if (auto error = co_await wait(true); !error.empty()) co_return error;
    }
}

asio::awaitable<std::string> NodeProbe::read_rows(std::vector<ProbeRow>& rows) {
    std::string first_error;
    bool any_result = false;
    for (;;) {
        // PQgetResult blocks while libpq is busy, so it is only called once it is not.
        while (PQisBusy(connection_) != 0) {
            if (auto error = co_await wait(false); !error.empty()) co_return error;
            if (PQconsumeInput(connection_) == 0) co_return libpq_error();
        }
        ResultPtr result(PQgetResult(connection_));
        if (!result) break;
        any_result = true;
        // Read to the end even after an error so the connection is left idle.
        if (auto error = take_rows(result.get(), rows); first_error.empty()) first_error = error;
    }
    if (first_error.empty() && !any_result) first_error = "query returned no result";
    co_return first_error;
}

asio::awaitable<std::string> NodeProbe::wait(bool for_write) {
    if (auto error = deadline_error(); !error.empty()) co_return error;
    if (ready_now(socket_.native_handle(), for_write)) co_return std::string{};
    const auto type = for_write ? asio::posix::descriptor_base::wait_write
                                : asio::posix::descriptor_base::wait_read;
    auto [ec] = co_await socket_.async_wait(type, as_values);
    if (auto error = deadline_error(); !error.empty()) co_return error;
    if (ec) co_return fmt::format("waiting for the socket: {}", ec.message());
    co_return std::string{};
}

std::string NodeProbe::watch_socket(bool reregister) {
    const int fd = PQsocket(connection_);
    if (fd < 0) return "libpq has no socket";
    if (socket_.is_open()) {
        if (!reregister && socket_.native_handle() == fd) return {};
        (void)socket_.release();
    }
    boost::system::error_code ec;
    socket_.assign(fd, ec);
    if (ec) return fmt::format("watching the libpq socket: {}", ec.message());
    return {};
}

std::string NodeProbe::libpq_error() const {
    if (connection_ == nullptr) return "no connection";
    std::string message = trimmed(PQerrorMessage(connection_));
    return message.empty() ? std::string("connection failed") : message;
}

}  // namespace pglane::health
