#pragma once
// Message facts in one table (tag -> name, direction), then typed readers for the
// messages pglane inspects and writers for the ones it builds.
// https://www.postgresql.org/docs/15/protocol-message-formats.html

#include "protocol/bytes.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pglane::protocol {

enum class Direction { frontend, backend };

struct MessageInfo {
    char tag;
    Direction direction;
    std::string_view name;
};

/// Every message of protocol 3.0 after the startup phase, as the docs list them.
inline constexpr std::array<MessageInfo, 38> message_table{{
    {'B', Direction::frontend, "Bind"},
    {'C', Direction::frontend, "Close"},
    {'d', Direction::frontend, "CopyData"},
    {'c', Direction::frontend, "CopyDone"},
    {'f', Direction::frontend, "CopyFail"},
    {'D', Direction::frontend, "Describe"},
    {'E', Direction::frontend, "Execute"},
    {'H', Direction::frontend, "Flush"},
    {'F', Direction::frontend, "FunctionCall"},
    {'P', Direction::frontend, "Parse"},
    {'p', Direction::frontend, "PasswordMessage"},  // also SASLInitialResponse, SASLResponse, GSSResponse
    {'Q', Direction::frontend, "Query"},
    {'S', Direction::frontend, "Sync"},
    {'X', Direction::frontend, "Terminate"},
    {'R', Direction::backend, "Authentication"},
    {'K', Direction::backend, "BackendKeyData"},
    {'2', Direction::backend, "BindComplete"},
    {'3', Direction::backend, "CloseComplete"},
    {'C', Direction::backend, "CommandComplete"},
    {'d', Direction::backend, "CopyData"},
    {'c', Direction::backend, "CopyDone"},
    {'G', Direction::backend, "CopyInResponse"},
    {'H', Direction::backend, "CopyOutResponse"},
    {'W', Direction::backend, "CopyBothResponse"},
    {'D', Direction::backend, "DataRow"},
    {'I', Direction::backend, "EmptyQueryResponse"},
    {'E', Direction::backend, "ErrorResponse"},
    {'V', Direction::backend, "FunctionCallResponse"},
    {'v', Direction::backend, "NegotiateProtocolVersion"},
    {'n', Direction::backend, "NoData"},
    {'N', Direction::backend, "NoticeResponse"},
    {'A', Direction::backend, "NotificationResponse"},
    {'t', Direction::backend, "ParameterDescription"},
    {'S', Direction::backend, "ParameterStatus"},
    {'1', Direction::backend, "ParseComplete"},
    {'s', Direction::backend, "PortalSuspended"},
    {'Z', Direction::backend, "ReadyForQuery"},
    {'T', Direction::backend, "RowDescription"},
}};

/// The message's name, or empty when `tag` is not a message of that direction.
[[nodiscard]] std::string_view message_name(char tag, Direction direction);

/// True when `tag` is a message a client may send after startup.
[[nodiscard]] bool is_frontend_message(char tag);

// ---- startup phase -------------------------------------------------------------------

inline constexpr std::uint32_t protocol_version_3_0 = 196608;    // 3 << 16
inline constexpr std::uint32_t cancel_request_code = 80877102;  // 1234 << 16 | 5678
inline constexpr std::uint32_t ssl_request_code = 80877103;     // 1234 << 16 | 5679
inline constexpr std::uint32_t gssenc_request_code = 80877104;  // 1234 << 16 | 5680

enum class StartupKind { startup, ssl_request, gssenc_request, cancel_request, unsupported_version, malformed };

/// A decoded startup-phase packet. For `startup`, parameters are in order; for
/// `cancel_request`, the key fields are set; `error` explains `malformed`/`unsupported_version`.
struct StartupPacket {
    StartupKind kind = StartupKind::malformed;
    std::uint32_t version = 0;
    std::vector<std::pair<std::string, std::string>> parameters;
    std::uint32_t process_id = 0;
    std::uint32_t secret_key = 0;
    std::string error;

    [[nodiscard]] std::string_view parameter(std::string_view name) const;
};

/// Decodes the body (after the length) of an untagged startup-phase packet.
[[nodiscard]] StartupPacket parse_startup(Bytes body);

// ---- backend messages pglane reads ----------------------------------------------------

enum class TransactionStatus : char { idle = 'I', in_transaction = 'T', failed = 'E' };

struct BackendKey {
    std::uint32_t process_id = 0;
    std::uint32_t secret_key = 0;
};

struct AuthenticationRequest {
    std::int32_t code = 0;   // 0 ok, 3 cleartext, 5 md5, 10 SASL, 11 SASLContinue, 12 SASLFinal
    Bytes data;              // what follows the code (salt, mechanism list, SASL data)
};

// Authentication request codes (https://www.postgresql.org/docs/15/protocol-message-formats.html).
inline constexpr std::int32_t auth_ok = 0;
inline constexpr std::int32_t auth_cleartext = 3;
inline constexpr std::int32_t auth_md5 = 5;
inline constexpr std::int32_t auth_sasl = 10;
inline constexpr std::int32_t auth_sasl_continue = 11;
inline constexpr std::int32_t auth_sasl_final = 12;

/// ErrorResponse / NoticeResponse fields by their one-letter codes.
struct ErrorFields {
    std::string severity;   // 'S' (localized) / 'V'
    std::string sqlstate;   // 'C'
    std::string message;    // 'M'
    std::string detail;     // 'D'
    std::string hint;       // 'H'
};

[[nodiscard]] std::optional<TransactionStatus> read_ready_for_query(Bytes body);
[[nodiscard]] std::optional<BackendKey> read_backend_key_data(Bytes body);
[[nodiscard]] std::optional<AuthenticationRequest> read_authentication(Bytes body);
[[nodiscard]] std::optional<ErrorFields> read_error_fields(Bytes body);
[[nodiscard]] std::optional<std::pair<std::string_view, std::string_view>> read_parameter_status(Bytes body);

// ---- frontend messages pglane reads ---------------------------------------------------

struct ParseMessage {
    std::string_view statement;
    std::string_view query;
    std::vector<std::uint32_t> parameter_types;
};
struct BindMessage {
    std::string_view portal;
    std::string_view statement;
};
struct TargetMessage {          // Describe and Close: 'S' statement or 'P' portal, and a name
    char target = 0;
    std::string_view name;
};
struct ExecuteMessage {
    std::string_view portal;
    std::int32_t max_rows = 0;
};

[[nodiscard]] std::optional<std::string_view> read_query(Bytes body);
[[nodiscard]] std::optional<ParseMessage> read_parse(Bytes body);
[[nodiscard]] std::optional<BindMessage> read_bind(Bytes body);
[[nodiscard]] std::optional<TargetMessage> read_describe(Bytes body);
[[nodiscard]] std::optional<TargetMessage> read_close(Bytes body);
[[nodiscard]] std::optional<ExecuteMessage> read_execute(Bytes body);

/// SASLInitialResponse ('p' answering AuthenticationSASL): the mechanism, then the initial
/// client response, whose length -1 means "none" (an empty `data`).
struct SaslInitialResponse {
    std::string_view mechanism;
    std::string_view data;
};
[[nodiscard]] std::optional<SaslInitialResponse> read_sasl_initial_response(Bytes body);

// ---- writers --------------------------------------------------------------------------

/// Appends one message to a byte string, patching its length when done.
class MessageWriter {
public:
    /// `tag` 0 writes an untagged startup-phase packet.
    MessageWriter(std::string& out, char tag);
    MessageWriter(const MessageWriter&) = delete;
    MessageWriter& operator=(const MessageWriter&) = delete;
    ~MessageWriter();

    MessageWriter& u8(std::uint8_t v);
    MessageWriter& i16(std::int16_t v);
    MessageWriter& i32(std::int32_t v);
    MessageWriter& u32(std::uint32_t v);
    MessageWriter& cstring(std::string_view v);
    MessageWriter& raw(std::string_view v);

private:
    std::string& out_;
    std::size_t length_at_;
};

/// SQLSTATEs pglane raises or looks for (https://www.postgresql.org/docs/15/errcodes-appendix.html).
namespace sqlstate {
inline constexpr std::string_view protocol_violation = "08P01";
inline constexpr std::string_view connection_failure = "08006";
inline constexpr std::string_view cannot_connect_now = "57P03";
inline constexpr std::string_view admin_shutdown = "57P01";
inline constexpr std::string_view too_many_connections = "53300";
inline constexpr std::string_view feature_not_supported = "0A000";
inline constexpr std::string_view invalid_authorization = "28000";
inline constexpr std::string_view query_canceled = "57014";
inline constexpr std::string_view internal_error = "XX000";
inline constexpr std::string_view invalid_sql_statement_name = "26000";
}  // namespace sqlstate

void append_error_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                           std::string_view message, std::string_view detail = {});
void append_ready_for_query(std::string& out, TransactionStatus status);
void append_backend_key_data(std::string& out, BackendKey key);
void append_parameter_status(std::string& out, std::string_view name, std::string_view value);
void append_authentication(std::string& out, std::int32_t code, std::string_view data = {});
void append_startup_message(std::string& out, const std::vector<std::pair<std::string, std::string>>& parameters);
void append_ssl_request(std::string& out);
void append_cancel_request(std::string& out, BackendKey key);
void append_query(std::string& out, std::string_view sql);
void append_terminate(std::string& out);

/// A ParameterStatus value a greeting reports instead of the server's (when it has the name).
struct ParameterReplacement {
    std::string_view name;
    std::string_view value;
};

/// The end of a startup as a server sends it: a ParameterStatus per (name, value) of
/// `parameters` (`replace.value` for `replace.name`), BackendKeyData, ReadyForQuery (idle).
template <typename Parameters>
void append_greeting(std::string& out, const Parameters& parameters, BackendKey key, ParameterReplacement replace = {}) {
    for (const auto& [name, value] : parameters)
        append_parameter_status(out, name, !replace.name.empty() && name == replace.name ? replace.value : value);
    append_backend_key_data(out, key);
    append_ready_for_query(out, TransactionStatus::idle);
}
void append_sync(std::string& out);

}  // namespace pglane::protocol
