#include "protocol/messages.hpp"

#include <algorithm>

namespace pglane::protocol {

std::string_view message_name(char tag, Direction direction) {
    for (const MessageInfo& info : message_table) {
        if (info.tag == tag && info.direction == direction) return info.name;
    }
    return {};
}

bool is_frontend_message(char tag) { return !message_name(tag, Direction::frontend).empty(); }

// ---- startup phase -------------------------------------------------------------------

std::string_view StartupPacket::parameter(std::string_view name) const {
    for (const auto& [key, value] : parameters) {
        if (key == name) return value;
    }
    return {};
}

namespace {

StartupPacket malformed(std::string why) {
    StartupPacket packet;
    packet.kind = StartupKind::malformed;
    packet.error = std::move(why);
    return packet;
}

// StartupMessage: version, then name/value string pairs ended by an empty name.
StartupPacket parse_startup_parameters(BodyReader& reader, StartupPacket packet) {
    while (true) {
        std::string_view name = reader.cstring();
        if (reader.failed()) return malformed("startup packet parameters are not NUL-terminated");
        if (name.empty()) break;
        std::string_view value = reader.cstring();
        if (reader.failed()) return malformed("startup packet parameter value is not NUL-terminated");
        packet.parameters.emplace_back(name, value);
    }
    if (!reader.at_end()) return malformed("bytes after the end of the startup packet");
    if (packet.parameter("user").empty()) return malformed("no PostgreSQL user name specified in startup packet");
    return packet;
}

}  // namespace

StartupPacket parse_startup(Bytes body) {
    BodyReader reader(body);
    std::uint32_t code = reader.u32();
    if (reader.failed()) return malformed("startup packet too short");
    StartupPacket packet;
    packet.version = code;
    switch (code) {
        case ssl_request_code:
        case gssenc_request_code:
            if (!reader.at_end()) return malformed("SSLRequest/GSSENCRequest with a body");
            packet.kind = code == ssl_request_code ? StartupKind::ssl_request : StartupKind::gssenc_request;
            return packet;
        case cancel_request_code:
            packet.process_id = reader.u32();
            packet.secret_key = reader.u32();
            if (reader.failed() || !reader.at_end()) return malformed("CancelRequest of the wrong length");
            packet.kind = StartupKind::cancel_request;
            return packet;
        default:
            break;
    }
    // Major version 3 is the only protocol spoken since PostgreSQL 7.4; minor versions above
    // 0 are answered by the server with NegotiateProtocolVersion, so they pass through.
    if ((code >> 16) != 3) {
        packet.kind = StartupKind::unsupported_version;
        packet.error = "unsupported frontend protocol " + std::to_string(code >> 16) + "." +
                       std::to_string(code & 0xffff) + ": server supports 3.0";
        return packet;
    }
    packet.kind = StartupKind::startup;
    return parse_startup_parameters(reader, std::move(packet));
}

// ---- backend messages ----------------------------------------------------------------

std::optional<TransactionStatus> read_ready_for_query(Bytes body) {
    if (body.size() != 1) return std::nullopt;
    char status = static_cast<char>(body[0]);
    if (status != 'I' && status != 'T' && status != 'E') return std::nullopt;
    return static_cast<TransactionStatus>(status);
}

std::optional<BackendKey> read_backend_key_data(Bytes body) {
    BodyReader reader(body);
    BackendKey key{reader.u32(), reader.u32()};
    if (reader.failed() || !reader.at_end()) return std::nullopt;
    return key;
}

std::optional<AuthenticationRequest> read_authentication(Bytes body) {
    BodyReader reader(body);
    AuthenticationRequest request;
    request.code = reader.i32();
    if (reader.failed()) return std::nullopt;
    request.data = reader.remaining();
    return request;
}

std::optional<ErrorFields> read_error_fields(Bytes body) {
    BodyReader reader(body);
    ErrorFields fields;
    while (true) {
        char code = static_cast<char>(reader.u8());
        if (reader.failed()) return std::nullopt;
        if (code == '\0') break;
        std::string_view value = reader.cstring();
        if (reader.failed()) return std::nullopt;
        switch (code) {
            case 'V': fields.severity = value; break;
            case 'S': if (fields.severity.empty()) fields.severity = value; break;
            case 'C': fields.sqlstate = value; break;
            case 'M': fields.message = value; break;
            case 'D': fields.detail = value; break;
            case 'H': fields.hint = value; break;
            default: break;
        }
    }
    return fields;
}

std::optional<std::pair<std::string_view, std::string_view>> read_parameter_status(Bytes body) {
    BodyReader reader(body);
    std::string_view name = reader.cstring();
    std::string_view value = reader.cstring();
    if (reader.failed() || !reader.at_end()) return std::nullopt;
    return std::pair{name, value};
}

// ---- frontend messages ---------------------------------------------------------------

std::optional<std::string_view> read_query(Bytes body) {
    BodyReader reader(body);
    std::string_view sql = reader.cstring();
    if (reader.failed() || !reader.at_end()) return std::nullopt;
    return sql;
}

std::optional<ParseMessage> read_parse(Bytes body) {
    BodyReader reader(body);
    ParseMessage parse;
    parse.statement = reader.cstring();
    parse.query = reader.cstring();
    std::int16_t count = reader.i16();
    // The body must hold exactly `count` type OIDs: checked before reading (or reserving for)
    // up to 32767 of them on a message that is 20 bytes long.
    if (reader.failed() || count < 0 || reader.remaining().size() != 4 * static_cast<std::size_t>(count))
        return std::nullopt;
    parse.parameter_types.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) parse.parameter_types.push_back(reader.u32());
    if (reader.failed() || !reader.at_end()) return std::nullopt;
    return parse;
}

std::optional<BindMessage> read_bind(Bytes body) {
    BodyReader reader(body);
    BindMessage bind;
    bind.portal = reader.cstring();
    bind.statement = reader.cstring();
    if (reader.failed()) return std::nullopt;
    return bind;  // parameter formats and values pass through untouched
}

namespace {
std::optional<TargetMessage> read_target(Bytes body) {
    BodyReader reader(body);
    TargetMessage message;
    message.target = static_cast<char>(reader.u8());
    message.name = reader.cstring();
    if (reader.failed() || !reader.at_end()) return std::nullopt;
    if (message.target != 'S' && message.target != 'P') return std::nullopt;
    return message;
}
}  // namespace

std::optional<TargetMessage> read_describe(Bytes body) { return read_target(body); }
std::optional<TargetMessage> read_close(Bytes body) { return read_target(body); }

std::optional<ExecuteMessage> read_execute(Bytes body) {
    BodyReader reader(body);
    ExecuteMessage execute;
    execute.portal = reader.cstring();
    execute.max_rows = reader.i32();
    if (reader.failed() || !reader.at_end()) return std::nullopt;
    return execute;
}

std::optional<SaslInitialResponse> read_sasl_initial_response(Bytes body) {
    BodyReader reader(body);
    SaslInitialResponse response;
    response.mechanism = reader.cstring();
    std::int32_t length = reader.i32();
    if (reader.failed() || length < -1) return std::nullopt;
    if (length > 0) response.data = as_text(reader.bytes(static_cast<std::size_t>(length)));
    if (reader.failed() || !reader.at_end()) return std::nullopt;
    return response;
}

// ---- writers -------------------------------------------------------------------------

MessageWriter::MessageWriter(std::string& out, char tag) : out_(out) {
    if (tag != 0) out_.push_back(tag);
    length_at_ = out_.size();
    out_.append(4, '\0');
}

MessageWriter::~MessageWriter() {
    auto length = static_cast<std::uint32_t>(out_.size() - length_at_);
    out_[length_at_] = static_cast<char>(length >> 24);
    out_[length_at_ + 1] = static_cast<char>(length >> 16);
    out_[length_at_ + 2] = static_cast<char>(length >> 8);
    out_[length_at_ + 3] = static_cast<char>(length);
}

MessageWriter& MessageWriter::u8(std::uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
}
MessageWriter& MessageWriter::i16(std::int16_t v) {
    auto u = static_cast<std::uint16_t>(v);
    out_.push_back(static_cast<char>(u >> 8));
    out_.push_back(static_cast<char>(u));
    return *this;
}
MessageWriter& MessageWriter::u32(std::uint32_t v) {
    out_.push_back(static_cast<char>(v >> 24));
    out_.push_back(static_cast<char>(v >> 16));
    out_.push_back(static_cast<char>(v >> 8));
    out_.push_back(static_cast<char>(v));
    return *this;
}
MessageWriter& MessageWriter::i32(std::int32_t v) { return u32(static_cast<std::uint32_t>(v)); }
MessageWriter& MessageWriter::cstring(std::string_view v) {
    out_.append(v);
    out_.push_back('\0');
    return *this;
}
MessageWriter& MessageWriter::raw(std::string_view v) {
    out_.append(v);
    return *this;
}

void append_error_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                           std::string_view message, std::string_view detail) {
    MessageWriter w(out, 'E');
    w.u8('S').cstring(severity).u8('V').cstring(severity).u8('C').cstring(sqlstate).u8('M').cstring(message);
    if (!detail.empty()) w.u8('D').cstring(detail);
    w.u8(0);
}

void append_ready_for_query(std::string& out, TransactionStatus status) {
    MessageWriter(out, 'Z').u8(static_cast<std::uint8_t>(status));
}

void append_backend_key_data(std::string& out, BackendKey key) {
    MessageWriter(out, 'K').u32(key.process_id).u32(key.secret_key);
}

void append_parameter_status(std::string& out, std::string_view name, std::string_view value) {
    MessageWriter(out, 'S').cstring(name).cstring(value);
}

void append_authentication(std::string& out, std::int32_t code, std::string_view data) {
    MessageWriter(out, 'R').i32(code).raw(data);
}

void append_startup_message(std::string& out, const std::vector<std::pair<std::string, std::string>>& parameters) {
    MessageWriter w(out, 0);
    w.u32(protocol_version_3_0);
    for (const auto& [name, value] : parameters) w.cstring(name).cstring(value);
    w.u8(0);
}

void append_ssl_request(std::string& out) { MessageWriter(out, 0).u32(ssl_request_code); }

void append_cancel_request(std::string& out, BackendKey key) {
    MessageWriter(out, 0).u32(cancel_request_code).u32(key.process_id).u32(key.secret_key);
}

void append_query(std::string& out, std::string_view sql) { MessageWriter(out, 'Q').cstring(sql); }
void append_terminate(std::string& out) { MessageWriter(out, 'X'); }
void append_sync(std::string& out) { MessageWriter(out, 'S'); }

}  // namespace pglane::protocol
