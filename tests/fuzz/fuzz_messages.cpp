// Fuzz target: the typed readers of frontend and backend message bodies. Every reader runs on
// every input; what a reader accepts must point into the body and, for the messages pglane
// also writes, encode back to the very same bytes.
//
// Input: tag byte (for the message table lookups), then one message body.

#include "protocol/messages.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <string>

using namespace pglane::protocol;
using pglane::fuzz::within;

namespace {

std::string framed(char tag, std::string_view body) {
    std::string out(1, tag);
    auto length = static_cast<std::uint32_t>(body.size() + 4);
    out.push_back(static_cast<char>(length >> 24));
    out.push_back(static_cast<char>(length >> 16));
    out.push_back(static_cast<char>(length >> 8));
    out.push_back(static_cast<char>(length));
    out.append(body);
    return out;
}

void frontend_readers(Bytes body, std::string_view text) {
    if (auto sql = read_query(body)) {
        FUZZ_CHECK(within(*sql, text));
        std::string out;
        append_query(out, *sql);
        FUZZ_CHECK(out == framed('Q', text));
    }
    if (auto parse = read_parse(body)) {
        FUZZ_CHECK(within(parse->statement, text) && within(parse->query, text));
        FUZZ_CHECK(parse->statement.size() + parse->query.size() + 4 + 4 * parse->parameter_types.size() == text.size());
    }
    if (auto bind = read_bind(body)) FUZZ_CHECK(within(bind->portal, text) && within(bind->statement, text));
    for (auto reader : {read_describe, read_close}) {
        if (auto target = reader(body)) {
            FUZZ_CHECK(target->target == 'S' || target->target == 'P');
            FUZZ_CHECK(within(target->name, text) && target->name.size() + 2 == text.size());
        }
    }
    if (auto execute = read_execute(body)) FUZZ_CHECK(within(execute->portal, text) && execute->portal.size() + 5 == text.size());
    if (auto sasl = read_sasl_initial_response(body)) {
        FUZZ_CHECK(within(sasl->mechanism, text) && within(sasl->data, text));
        FUZZ_CHECK(sasl->mechanism.size() + 5 + sasl->data.size() == text.size());
    }
}

void backend_readers(Bytes body, std::string_view text) {
    if (auto status = read_ready_for_query(body)) {
        std::string out;
        append_ready_for_query(out, *status);
        FUZZ_CHECK(out == framed('Z', text));
    }
    if (auto key = read_backend_key_data(body)) {
        std::string out;
        append_backend_key_data(out, *key);
        FUZZ_CHECK(out == framed('K', text));
    }
    if (auto request = read_authentication(body)) {
        std::string out;
        append_authentication(out, request->code, as_text(request->data));
        FUZZ_CHECK(out == framed('R', text));
    }
    if (auto parameter = read_parameter_status(body)) {
        FUZZ_CHECK(within(parameter->first, text) && within(parameter->second, text));
        std::string out;
        append_parameter_status(out, parameter->first, parameter->second);
        FUZZ_CHECK(out == framed('S', text));
    }
    if (auto fields = read_error_fields(body)) {
        // What pglane writes from the fields reads back as the same fields.
        if (!fields->sqlstate.empty() && fields->sqlstate.find('\0') == std::string::npos) {
            std::string out;
            append_error_response(out, fields->severity, fields->sqlstate, fields->message, fields->detail);
            auto again = read_error_fields(as_bytes(std::string_view(out).substr(5)));
            FUZZ_CHECK(again && again->sqlstate == fields->sqlstate && again->message == fields->message &&
                       again->detail == fields->detail && again->severity == fields->severity);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    pglane::fuzz::Input input(data, size);
    const char tag = static_cast<char>(input.byte());
    const Bytes body = input.rest();
    const std::string_view text = input.rest_text();

    FUZZ_CHECK(is_frontend_message(tag) == !message_name(tag, Direction::frontend).empty());
    (void)message_name(tag, Direction::backend);
    frontend_readers(body, text);
    backend_readers(body, text);
    return 0;
}
