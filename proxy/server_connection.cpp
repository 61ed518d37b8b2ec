#include "proxy/server_connection.hpp"

#include "common/log.hpp"
#include "protocol/md5_auth.hpp"
#include "proxy/net.hpp"
#include "proxy/peer_waits.hpp"

#include <fmt/format.h>


namespace pglane::proxy {

using protocol::sqlstate::connection_failure;

namespace {

constexpr std::size_t buffer_bytes = 16 * 1024;
constexpr std::uint32_t max_login_message_bytes = 1024 * 1024;

using protocol::auth_cleartext;
using protocol::auth_md5;
using protocol::auth_sasl;
using protocol::auth_sasl_continue;

std::string_view parameter(const std::vector<std::pair<std::string, std::string>>& parameters, std::string_view name) {
    for (const auto& [key, value] : parameters)
        if (key == name) return value;
    return {};
}

void append_password_message(std::string& out, std::string_view payload_with_nul) {
    protocol::MessageWriter(out, 'p').raw(payload_with_nul);
}

// A DataRow body: int16 column count, then per column int32 length (-1 = NULL) and bytes.
std::optional<std::vector<std::optional<std::string>>> read_data_row(protocol::Bytes body) {
    protocol::BodyReader reader(body);
    std::int16_t count = reader.i16();
    std::vector<std::optional<std::string>> row;
    for (int i = 0; i < count && !reader.failed(); ++i) {
        std::int32_t length = reader.i32();
        if (length < 0) {
            row.emplace_back(std::nullopt);
            continue;
        }
        row.emplace_back(std::string(protocol::as_text(reader.bytes(static_cast<std::size_t>(length)))));
    }
    if (reader.failed()) return std::nullopt;
    return row;
}

}  // namespace

ServerConnection::ServerConnection(asio::any_io_executor executor, std::size_t node, health::NodeAddress address,
                                   const Limits& limits, SSL_CTX* tls)
    : node_(node), address_(std::move(address)), limits_(limits), tls_(tls), stream_(executor), in_(buffer_bytes) {}

ServerFailure ServerConnection::failure(std::string_view sqlstate, std::string message) const {
    return {std::string(sqlstate), fmt::format("pglane: server {}: {}", address_.name, message)};
}

void ServerConnection::mark_broken() {
    broken_ = true;
    close();
}

void ServerConnection::close() { stream_.close(); }

void ServerConnection::terminate() {
    if (!broken_ && stream_.is_open()) {
        std::string bye;
        protocol::append_terminate(bye);
        stream_.write_now(bye);
    }
    close();
}

asio::awaitable<bool> ServerConnection::write(std::string_view bytes) {
    bool ok = false;
    if (write_at_once(bytes, ok)) co_return ok;
    co_return co_await finish_write();
}

bool ServerConnection::write_at_once(std::string_view bytes, bool& ok) {
    ok = false;
    if (broken_) return true;
    Stream::Result result;
    if (!stream_.write_at_once(asio::buffer(bytes), result)) return false;
    ok = !std::get<0>(result);
    if (!ok) mark_broken();
    return true;
}

asio::awaitable<bool> ServerConnection::finish_write() {
    auto [ec, n] = co_await stream_.finish_write();
    if (ec) mark_broken();
    co_return !ec;
}

bool ServerConnection::usable_after_idle() {
    if (broken_) return false;
    // Most checks come right after the unit whose ReadyForQuery emptied the socket, and the
    // reactor knows that nothing arrived since: no recv then (one system call less per
    // unit). What arrives after the reactor's last poll is not seen by this check, nor was
    // what arrived after the recv that used to be made here: either way the unit's own
    // write or read meets it. The window is the time since that poll (this worker's current
    // round of ready handlers); a server that closes an idle connection is seen by the
    // next poll, and the check then recvs as before.
    if (!stream_.quiet_since_drained() && !read_what_arrived()) return false;
    for (;;) {
        protocol::Frame frame = protocol::frame_message(in_.unread(), limits_.max_message_bytes);
        if (frame.status == protocol::FrameStatus::need_more) return true;
        if (frame.status == protocol::FrameStatus::malformed || (frame.tag != 'A' && frame.tag != 'N' && frame.tag != 'S')) {
            mark_broken();
            return false;
        }
        if (frame.tag != 'S') pending_async_.append(protocol::as_text(in_.unread().first(frame.size)));
        in_.consume(frame.size);
    }
}

bool ServerConnection::read_what_arrived() {
    for (;;) {
        auto space = in_.free_space();
        if (space.empty()) {
            in_.compact();
            space = in_.free_space();
            if (space.empty()) return false;
        }
        boost::system::error_code ec;
        const std::size_t n = stream_.read_now(asio::buffer(space.data(), space.size()), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) return true;
        if (ec == asio::error::interrupted) continue;
        if (ec) {
            mark_broken();
            return false;
        }
        in_.commit(n);
    }
}

asio::awaitable<bool> ServerConnection::read_more(std::size_t ready_owed) {
    if (broken_) co_return false;
    in_.compact();
    auto space = in_.free_space();
    const ServerAnswered answered{&in_, &ready_owed, true};
    auto [ec, n] = co_await stream_.read_some(asio::buffer(space.data(), space.size()), answered.hint());
    if (ec) {
        mark_broken();
        co_return false;
    }
    in_.commit(n);
    co_return true;
}

asio::awaitable<std::optional<protocol::Frame>> ServerConnection::read_frame(std::uint32_t max) {
    for (;;) {
        protocol::Frame frame = protocol::frame_message(in_.unread(), max);
        if (frame.status == protocol::FrameStatus::message) co_return frame;
        if (frame.status == protocol::FrameStatus::malformed) {
            mark_broken();
            co_return std::nullopt;
        }
        if (frame.header_known()) in_.reserve_frame(frame.size);
        if (!co_await read_more()) co_return std::nullopt;
    }
}

asio::awaitable<std::optional<ServerFailure>> ServerConnection::open(
    const std::vector<std::pair<std::string, std::string>>& startup_parameters, const ServerCredentials& credentials) {
    std::string error = co_await connect_to_server(stream_, address_, tls_,
                                                 std::chrono::milliseconds(limits_.server_connect_timeout_ms));
    if (!error.empty()) {
        broken_ = true;
        co_return failure(connection_failure, "cannot connect: " + error);
    }
    // Reads between units (usable_after_idle) must never wait.
    stream_.set_non_blocking();
    std::string startup;
    protocol::append_startup_message(startup, startup_parameters);
    if (!co_await write(startup)) co_return failure(connection_failure, "connection lost during startup");
    // The md5 answer hashes the user name from the startup packet.
    ServerCredentials with_user = credentials;
    if (with_user.md5_hash.empty() && !with_user.password.empty())
        with_user.md5_hash = protocol::md5::password_hash(parameter(startup_parameters, "user"), with_user.password);
    co_return co_await authenticate(with_user);
}

asio::awaitable<std::optional<ServerFailure>> ServerConnection::authenticate(const ServerCredentials& credentials) {
    for (;;) {
        auto frame = co_await read_frame(max_login_message_bytes);
        if (!frame) co_return failure(connection_failure, "connection lost during login");
        char tag = frame->tag;
        protocol::Bytes body = frame->body;
        std::optional<ServerFailure> problem;
        std::string reply;
        if (tag == 'E') {
            auto fields = protocol::read_error_fields(body).value_or(protocol::ErrorFields{});
            problem = ServerFailure{fields.sqlstate.empty() ? std::string(connection_failure) : fields.sqlstate,
                                    fields.message};
        } else if (tag == 'S') {
            if (auto status = protocol::read_parameter_status(body))
                parameters_[std::string(status->first)] = std::string(status->second);
        } else if (tag == 'K') {
            backend_key_ = protocol::read_backend_key_data(body).value_or(protocol::BackendKey{});
        } else if (tag == 'R') {
            auto request = protocol::read_authentication(body);
            if (!request) problem = failure(protocol::sqlstate::protocol_violation, "malformed authentication request");
            else if (request->code == auth_cleartext) {
                if (credentials.password.empty())
                    problem = failure("28000", "asks for a cleartext password, but pglane holds none for this user");
                else {
                    std::string payload = credentials.password;
                    payload.push_back('\0');
                    append_password_message(reply, payload);
                }
            } else if (request->code == auth_md5) {
                if (credentials.md5_hash.empty() || request->data.size() != 4)
                    problem = failure("28000", "asks for md5, but pglane holds neither the password nor its md5 hash");
                else {
                    std::string payload =
                        protocol::md5::salted_response(credentials.md5_hash, protocol::as_text(request->data));
                    payload.push_back('\0');
                    append_password_message(reply, payload);
                }
            } else if (request->code == auth_sasl) {
                in_.consume(frame->size);
                problem = co_await answer_sasl(request->data, credentials);
                if (problem) {
                    mark_broken();
                    co_return problem;
                }
                continue;
            } else if (request->code != protocol::auth_ok) {
                problem = failure("28000", fmt::format("asks for authentication method {}, which pglane does not "
                                                       "support toward servers",
                                                       request->code));
            }
        }
        in_.consume(frame->size);
        if (problem) {
            mark_broken();
            co_return problem;
        }
        if (!reply.empty() && !co_await write(reply)) co_return failure(connection_failure, "connection lost during login");
        if (tag == 'Z') co_return std::nullopt;
    }
}

asio::awaitable<std::optional<ServerFailure>> ServerConnection::answer_sasl(protocol::Bytes mechanisms,
                                                                            const ServerCredentials& credentials) {
    bool offered = false;
    protocol::BodyReader list(mechanisms);
    for (std::string_view m = list.cstring(); !list.failed() && !m.empty(); m = list.cstring())
        offered = offered || m == protocol::scram::mechanism;
    if (!offered) co_return failure("28000", "offers no SASL mechanism pglane speaks (SCRAM-SHA-256)");
    protocol::scram::ClientSecret secret = credentials.scram;
    if (secret.password.empty() && secret.client_key.empty()) secret.password = credentials.password;
    if (secret.password.empty() && secret.client_key.empty())
        co_return failure("28000", "asks for SCRAM, but pglane holds no password or SCRAM key for this user");
    protocol::scram::ClientExchange exchange(std::move(secret));
    std::string first = exchange.client_first();
    std::string out;
    protocol::MessageWriter(out, 'p').cstring(protocol::scram::mechanism).i32(static_cast<std::int32_t>(first.size())).raw(first);
    if (!co_await write(out)) co_return failure(connection_failure, "connection lost during SCRAM");
    for (;;) {
        auto frame = co_await read_frame(max_login_message_bytes);
        if (!frame) co_return failure(connection_failure, "connection lost during SCRAM");
        if (frame->tag == 'E') {
            auto fields = protocol::read_error_fields(frame->body).value_or(protocol::ErrorFields{});
            in_.consume(frame->size);
            co_return ServerFailure{fields.sqlstate.empty() ? "28P01" : fields.sqlstate, fields.message};
        }
        auto request = frame->tag == 'R' ? protocol::read_authentication(frame->body) : std::nullopt;
        if (!request) co_return failure(protocol::sqlstate::protocol_violation, "unexpected message during SCRAM");
        std::string data(protocol::as_text(request->data));
        in_.consume(frame->size);
        std::string error;
        if (request->code == auth_sasl_continue) {
            auto final_message = exchange.server_first(data, error);
            if (!final_message) co_return failure("28000", "SCRAM: " + error);
            out.clear();
            protocol::MessageWriter(out, 'p').raw(*final_message);
            if (!co_await write(out)) co_return failure(connection_failure, "connection lost during SCRAM");
        } else if (request->code == protocol::auth_sasl_final) {
            if (!exchange.server_final(data, error)) co_return failure("28000", "SCRAM: " + error);
            co_return std::nullopt;  // AuthenticationOk and the rest follow in authenticate()
        } else {
            co_return failure(protocol::sqlstate::protocol_violation, "unexpected authentication step during SCRAM");
        }
    }
}

asio::awaitable<HiddenResult> ServerConnection::hidden_query(std::string_view sql) {
    HiddenResult result;
    // Any simple Query destroys the unnamed prepared statement: the client's must be
    // prepared again before its next Bind here.
    statements.erase("");
    std::string out;
    protocol::append_query(out, sql);
    if (!co_await write(out)) co_return result;
    bool failed = false;
    for (;;) {
        auto frame = co_await read_frame(limits_.max_message_bytes);
        if (!frame) co_return result;
        switch (frame->tag) {
            case 'D':
                if (auto row = read_data_row(frame->body)) result.rows.push_back(std::move(*row));
                break;
            case 'E':
                failed = true;
                result.error = protocol::read_error_fields(frame->body).value_or(protocol::ErrorFields{});
                break;
            case 'S':
                if (auto status = protocol::read_parameter_status(frame->body))
                    parameters_[std::string(status->first)] = std::string(status->second);
                break;
            case 'A':
            case 'N':
                pending_async_.append(protocol::as_text(in_.unread().first(frame->size)));
                break;
            default:
                break;
        }
        in_.consume(frame->size);
        if (frame->tag == 'Z') {
            result.ok = !failed;
            co_return result;
        }
    }
}

}  // namespace pglane::proxy
