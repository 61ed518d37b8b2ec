// An AutoSession that connected to the virtual database "pglane" as one of admin.users:
// pglane answers its simple queries itself (admin_commands.hpp) and it never touches a
// server. Also here: how every other session waits while the console has PAUSEd them.

#include "common/log.hpp"
#include "pglane_version.hpp"
#include "proxy/admin_console.hpp"
#include "proxy/auto_session.hpp"
#include "proxy/cancel_registry.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <fmt/format.h>

namespace pglane::proxy {

using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

bool inside_transaction(const admin::ClientInfo& client) {
    return client.state == "active" || client.state == "idle in transaction";
}

}  // namespace

void AutoSession::describe(int worker, std::vector<admin::ClientInfo>& clients,
                           std::vector<admin::ServerInfo>& servers) const {
    admin::ClientInfo& info = clients.emplace_back();
    info.session = id_;
    info.worker = worker;
    info.listener = std::string(to_string(kind_));
    info.user = user_;
    info.database = database_;
    info.client = peer_;
    info.tls = client_.tls_version();
    if (admin_) info.state = "admin console";
    else if (paused_) info.state = "paused";
    else if (in_unit_) info.state = "active";
    else if (status_ != protocol::TransactionStatus::idle || !deferred_begin_.empty()) info.state = "idle in transaction";
    else info.state = "idle";
    info.connected_seconds =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - connected_at_).count();
    for (const auto& server : servers_) {
        if (!server) continue;
        if (!info.servers.empty()) info.servers += ",";
        info.servers += server->address().name;
        servers.push_back({server->address().name, database_, user_, server->backend_key().process_id, worker,
                           "in use", id_, std::string(std::as_const(*server).stream().tls_version())});
    }
}

asio::awaitable<std::optional<Disconnect>> AutoSession::greet_admin() {
    const std::string version = fmt::format("15.0 (pglane {})", pglane::version);
    const std::pair<std::string_view, std::string_view> parameters[] = {
        {"server_version", version},       {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},       {"DateStyle", "ISO, MDY"},
        {"integer_datetimes", "on"},       {"standard_conforming_strings", "on"},
        {"application_name", "pglane"},
    };
    client_key_ = services_.cancels.add(CancelTarget{});   // there is nothing to cancel
    std::string out;
    protocol::append_greeting(out, parameters, *client_key_);
    log::info("admin_console_session", {{"session", id_}, {"user", user_}, {"client", peer_}});
    if (!co_await write_client(out)) co_return Disconnect::quiet("client_left_during_startup");
    co_return std::nullopt;
}

asio::awaitable<Disconnect> AutoSession::serve_admin() {
    bool skipping = false;   // after refusing an extended-protocol message: up to its Sync
    for (;;) {
        if (fence_) co_return *fence_;
        if (drain_) co_return *drain_;
        protocol::Frame frame = protocol::frame_message(client_in_.unread(), services_.config.limits.max_message_bytes);
        if (frame.status == protocol::FrameStatus::malformed) co_return malformed_message(frame);
        if (frame.status == protocol::FrameStatus::need_more) {
            if (frame.header_known()) client_in_.reserve_frame(frame.size);
            client_in_.compact();
            fence_timer_.expires_at(asio::steady_timer::time_point::max());
            auto woke = co_await (client_.readable() ||
                                  fence_timer_.async_wait(use_nothrow));
            if (woke.index() == 1 || fence_ || drain_) continue;
            if (!read_client_now()) co_return Disconnect::quiet("client_disconnected");
            continue;
        }
        const char tag = frame.tag;
        std::string query;
        if (tag == 'Q') {
            std::string_view text = protocol::as_text(frame.body);
            query = text.substr(0, text.find('\0'));
        }
        client_in_.consume(frame.size);
        std::string out;
        if (tag == 'X') {
            client_terminated_ = true;
            co_return Disconnect::quiet("client_terminated");
        } else if (tag == 'Q') {
            co_await answer_admin(query, out);
            protocol::append_ready_for_query(out, protocol::TransactionStatus::idle);
        } else if (tag == 'S') {
            skipping = false;
            protocol::append_ready_for_query(out, protocol::TransactionStatus::idle);
        } else if (!skipping) {
            skipping = true;
            protocol::append_error_response(out, "ERROR", protocol::sqlstate::feature_not_supported,
                                            "pglane admin console: only simple queries (as psql sends them) are "
                                            "answered");
        }
        if (!out.empty() && !co_await write_client(out)) co_return Disconnect::quiet("client_disconnected");
    }
}

asio::awaitable<void> AutoSession::answer_admin(std::string_view query, std::string& out) {
    admin::ParsedCommand parsed = admin::parse_command(query);
    if (!parsed.command) {
        if (parsed.error.empty()) protocol::MessageWriter(out, 'I');   // EmptyQueryResponse
        else protocol::append_error_response(out, "ERROR", "42601", parsed.error);
        co_return;
    }
    AdminConsole& console = *services_.admin;
    switch (*parsed.command) {
    case admin::Command::show_nodes: admin::append_result_set(out, admin::nodes_table(console.status())); break;
    case admin::Command::show_pools: admin::append_result_set(out, admin::pools_table(console.status())); break;
    case admin::Command::show_stats: admin::append_result_set(out, admin::stats_table(console.status())); break;
    case admin::Command::show_clients: {
        AdminConsole::Snapshot snapshot = co_await console.snapshot();
        admin::append_result_set(out, admin::clients_table(snapshot.clients));
        break;
    }
    case admin::Command::show_servers: {
        AdminConsole::Snapshot snapshot = co_await console.snapshot();
        admin::append_result_set(out, admin::servers_table(snapshot.servers));
        break;
    }
    case admin::Command::show_version:
        admin::append_result_set(out, admin::ResultSet{{"version"}, {{std::string(pglane::version)}}, "SHOW"});
        break;
    case admin::Command::show_help: admin::append_result_set(out, admin::help_table()); break;
    case admin::Command::pause: co_await admin_pause(out); break;
    case admin::Command::reload:
        if (std::string refused = console.reload(); refused.empty()) {
            protocol::MessageWriter(out, 'C').cstring("RELOAD");
        } else {
            protocol::append_error_response(out, "ERROR", "F0000", "pglane: RELOAD refused: " + refused);
        }
        break;
    case admin::Command::resume:
        console.resume();
        log::info("admin_resume", {{"session", id_}, {"user", user_}});
        protocol::MessageWriter(out, 'C').cstring("RESUME");
        break;
    }
}

asio::awaitable<void> AutoSession::admin_pause(std::string& out) {
    AdminConsole& console = *services_.admin;
    console.paused.store(true);
    log::info("admin_pause", {{"session", id_}, {"user", user_}});
    // Done when no session is inside a transaction; bounded like a drain.
    const int limit_ms = services_.config.shutdown_timeout_ms;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
    asio::steady_timer tick(client_.get_executor());
    for (;;) {
        AdminConsole::Snapshot snapshot = co_await console.snapshot();
        auto busy = std::count_if(snapshot.clients.begin(), snapshot.clients.end(), inside_transaction);
        if (busy == 0) {
            protocol::MessageWriter(out, 'C').cstring("PAUSE");
            co_return;
        }
        if (std::chrono::steady_clock::now() >= deadline || fence_ || drain_) {
            protocol::append_error_response(
                out, "ERROR", "55000",
                fmt::format("pglane: PAUSE: {} session(s) still inside a transaction after {} ms; new transactions "
                            "stay paused until RESUME",
                            busy, limit_ms));
            co_return;
        }
        tick.expires_after(std::chrono::milliseconds(50));
        co_await tick.async_wait(use_nothrow);
    }
}

asio::awaitable<std::optional<Disconnect>> AutoSession::wait_while_paused() {
    // Woken by RESUME (the worker's gate) or by fence() and drain() (the fence timer, which
    // no idle limit may expire meanwhile).
    paused_ = true;
    fence_timer_.expires_at(asio::steady_timer::time_point::max());
    std::optional<Disconnect> stop;
    while (services_.admin->paused.load(std::memory_order_relaxed)) {
        if (fence_ || drain_) {
            stop = fence_ ? fence_ : drain_;
            break;
        }
        co_await (services_.resume_gate->async_wait(use_nothrow) || fence_timer_.async_wait(use_nothrow));
    }
    paused_ = false;
    co_return stop;
}

}  // namespace pglane::proxy
