// The message table and the typed readers, over hand-built message bodies.
// https://www.postgresql.org/docs/15/protocol-message-formats.html

#include "protocol/messages.hpp"
#include "tests/support/messages.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <utility>
#include <vector>

using namespace pglane::protocol;
using namespace pglane::test;

// ---- the table ------------------------------------------------------------------------

TEST_CASE("message_name gives the name of a tag in its direction", "[messages][table]") {
    CHECK(message_name('Q', Direction::frontend) == "Query");
    CHECK(message_name('Z', Direction::backend) == "ReadyForQuery");
    CHECK(message_name('R', Direction::backend) == "Authentication");
    CHECK(message_name('p', Direction::frontend) == "PasswordMessage");
    CHECK(message_name('v', Direction::backend) == "NegotiateProtocolVersion");
}

TEST_CASE("a tag used by both directions names a different message in each", "[messages][table]") {
    CHECK(message_name('C', Direction::frontend) == "Close");
    CHECK(message_name('C', Direction::backend) == "CommandComplete");
    CHECK(message_name('D', Direction::frontend) == "Describe");
    CHECK(message_name('D', Direction::backend) == "DataRow");
    CHECK(message_name('E', Direction::frontend) == "Execute");
    CHECK(message_name('E', Direction::backend) == "ErrorResponse");
    CHECK(message_name('S', Direction::frontend) == "Sync");
    CHECK(message_name('S', Direction::backend) == "ParameterStatus");
    CHECK(message_name('H', Direction::frontend) == "Flush");
    CHECK(message_name('H', Direction::backend) == "CopyOutResponse");
    CHECK(message_name('d', Direction::frontend) == "CopyData");
    CHECK(message_name('d', Direction::backend) == "CopyData");
}

TEST_CASE("message_name is empty for a tag not in that direction or not in the protocol",
          "[messages][table]") {
    CHECK(message_name('Z', Direction::frontend).empty());
    CHECK(message_name('Q', Direction::backend).empty());
    CHECK(message_name('!', Direction::frontend).empty());
    CHECK(message_name('!', Direction::backend).empty());
    CHECK(message_name('\0', Direction::frontend).empty());
}

TEST_CASE("is_frontend_message accepts exactly the documented frontend tags", "[messages][table]") {
    const std::string frontend_tags = "BCdcfDEHFPpQSX";
    for (int c = 0; c < 256; ++c) {
        char tag = static_cast<char>(c);
        INFO("tag " << c);
        CHECK(is_frontend_message(tag) == (tag != '\0' && frontend_tags.find(tag) != std::string::npos));
    }
    CHECK(is_frontend_message('Q'));
    CHECK_FALSE(is_frontend_message('Z'));
    CHECK_FALSE(is_frontend_message('!'));
}

TEST_CASE("the message table lists each tag once per direction, 14 frontend and 24 backend",
          "[messages][table]") {
    std::set<std::pair<char, Direction>> seen;
    int frontend = 0;
    int backend = 0;
    for (const MessageInfo& info : message_table) {
        INFO("tag " << info.tag << " " << info.name);
        CHECK(seen.insert({info.tag, info.direction}).second);
        CHECK_FALSE(info.name.empty());
        (info.direction == Direction::frontend ? frontend : backend) += 1;
    }
    CHECK(frontend == 14);
    CHECK(backend == 24);
    const std::string backend_tags = "RK23CdcGHWDIEVvnNAtS1sZT";
    for (char tag : backend_tags) {
        INFO("backend tag " << tag);
        CHECK_FALSE(message_name(tag, Direction::backend).empty());
    }
}

// ---- backend readers ------------------------------------------------------------------

TEST_CASE("ReadyForQuery reads the transaction status I, T or E", "[messages][readers]") {
    CHECK(read_ready_for_query(bytes("I")) == TransactionStatus::idle);
    CHECK(read_ready_for_query(bytes("T")) == TransactionStatus::in_transaction);
    CHECK(read_ready_for_query(bytes("E")) == TransactionStatus::failed);
}

TEST_CASE("ReadyForQuery with another status byte or length is rejected", "[messages][readers]") {
    CHECK_FALSE(read_ready_for_query(bytes("X")).has_value());
    CHECK_FALSE(read_ready_for_query(bytes("i")).has_value());
    CHECK_FALSE(read_ready_for_query(bytes(std::string(1, '\0'))).has_value());
    CHECK_FALSE(read_ready_for_query(bytes("")).has_value());
    CHECK_FALSE(read_ready_for_query(bytes("II")).has_value());
}

TEST_CASE("BackendKeyData reads the process id and secret key", "[messages][readers]") {
    auto key = read_backend_key_data(bytes(be32(12345) + be32(0xCAFEBABE)));
    REQUIRE(key.has_value());
    CHECK(key->process_id == 12345);
    CHECK(key->secret_key == 0xCAFEBABE);
}

TEST_CASE("BackendKeyData of the wrong length is rejected", "[messages][readers]") {
    CHECK_FALSE(read_backend_key_data(bytes(be32(1))).has_value());
    CHECK_FALSE(read_backend_key_data(bytes(be32(1) + be32(2).substr(0, 3))).has_value());
    CHECK_FALSE(read_backend_key_data(bytes(be32(1) + be32(2) + "x")).has_value());
    CHECK_FALSE(read_backend_key_data(bytes("")).has_value());
}

TEST_CASE("AuthenticationOk reads code 0 with no data", "[messages][readers]") {
    const std::string auth_body = be32(0);
    auto auth = read_authentication(bytes(auth_body));
    REQUIRE(auth.has_value());
    CHECK(auth->code == auth_ok);
    CHECK(auth->data.empty());
}

TEST_CASE("AuthenticationMD5Password reads code 5 and the 4-byte salt", "[messages][readers]") {
    std::string salt{'\x01', '\0', '\xFE', '\x7F'};
    const std::string auth_body = be32(5) + salt;
    auto auth = read_authentication(bytes(auth_body));
    REQUIRE(auth.has_value());
    CHECK(auth->code == 5);
    CHECK(text(auth->data) == salt);
}

TEST_CASE("AuthenticationSASL reads code 10 and the mechanism list", "[messages][readers]") {
    std::string mechanisms = cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + std::string(1, '\0');
    const std::string auth_body = be32(10) + mechanisms;
    auto auth = read_authentication(bytes(auth_body));
    REQUIRE(auth.has_value());
    CHECK(auth->code == 10);
    CHECK(text(auth->data) == mechanisms);

    const std::string final_message_body = be32(12) + "v=abc";
    auto final_message = read_authentication(bytes(final_message_body));
    REQUIRE(final_message.has_value());
    CHECK(final_message->code == auth_sasl_final);
    CHECK(text(final_message->data) == "v=abc");
}

TEST_CASE("an Authentication message shorter than its code is rejected", "[messages][readers]") {
    CHECK_FALSE(read_authentication(bytes("")).has_value());
    CHECK_FALSE(read_authentication(bytes(be32(0).substr(0, 3))).has_value());
}

TEST_CASE("ErrorResponse reads severity, SQLSTATE, message, detail and hint", "[messages][readers]") {
    std::string body = "S" + cstr("FATAL") + "V" + cstr("FATAL") + "C" + cstr("28P01") + "M" +
                       cstr("password authentication failed for user \"alice\"") + "D" +
                       cstr("Connection matched pg_hba.conf line 99") + "H" + cstr("check the password") +
                       std::string(1, '\0');
    auto fields = read_error_fields(bytes(body));
    REQUIRE(fields.has_value());
    CHECK(fields->severity == "FATAL");
    CHECK(fields->sqlstate == "28P01");
    CHECK(fields->message == "password authentication failed for user \"alice\"");
    CHECK(fields->detail == "Connection matched pg_hba.conf line 99");
    CHECK(fields->hint == "check the password");
}

TEST_CASE("ErrorResponse prefers the non-localized severity V over S, in either order",
          "[messages][readers]") {
    std::string s_first = "S" + cstr("FEHLER") + "V" + cstr("ERROR") + std::string(1, '\0');
    std::string v_first = "V" + cstr("ERROR") + "S" + cstr("FEHLER") + std::string(1, '\0');
    CHECK(read_error_fields(bytes(s_first))->severity == "ERROR");
    CHECK(read_error_fields(bytes(v_first))->severity == "ERROR");
}

TEST_CASE("ErrorResponse from a server without V takes the severity from S", "[messages][readers]") {
    auto fields = read_error_fields(bytes("S" + cstr("ERROR") + "C" + cstr("42P01") + std::string(1, '\0')));
    REQUIRE(fields.has_value());
    CHECK(fields->severity == "ERROR");
    CHECK(fields->sqlstate == "42P01");
    CHECK(fields->message.empty());
}

TEST_CASE("ErrorResponse ignores fields it does not know", "[messages][readers]") {
    std::string body = "S" + cstr("ERROR") + "P" + cstr("15") + "C" + cstr("42601") + "F" + cstr("scan.l") +
                       "L" + cstr("1176") + "R" + cstr("scanner_yyerror") + "M" + cstr("syntax error") +
                       "q" + cstr("future field") + std::string(1, '\0');
    auto fields = read_error_fields(bytes(body));
    REQUIRE(fields.has_value());
    CHECK(fields->severity == "ERROR");
    CHECK(fields->sqlstate == "42601");
    CHECK(fields->message == "syntax error");
    CHECK(fields->detail.empty());
    CHECK(fields->hint.empty());
}

TEST_CASE("ErrorResponse with only the terminator has empty fields", "[messages][readers]") {
    auto fields = read_error_fields(bytes(std::string(1, '\0')));
    REQUIRE(fields.has_value());
    CHECK(fields->severity.empty());
    CHECK(fields->sqlstate.empty());
    CHECK(fields->message.empty());
}

TEST_CASE("ErrorResponse without its terminator is rejected", "[messages][readers]") {
    CHECK_FALSE(read_error_fields(bytes("S" + cstr("ERROR") + "M" + cstr("boom"))).has_value());
    CHECK_FALSE(read_error_fields(bytes("")).has_value());
}

TEST_CASE("ErrorResponse with a field value lacking its NUL is rejected", "[messages][readers]") {
    CHECK_FALSE(read_error_fields(bytes("S" + cstr("ERROR") + "Mboom")).has_value());
}

TEST_CASE("ParameterStatus reads the name and value", "[messages][readers]") {
    const std::string status_body = cstr("server_version") + cstr("15.4");
    auto status = read_parameter_status(bytes(status_body));
    REQUIRE(status.has_value());
    CHECK(status->first == "server_version");
    CHECK(status->second == "15.4");

    const std::string empty_value_body = cstr("application_name") + cstr("");
    auto empty_value = read_parameter_status(bytes(empty_value_body));
    REQUIRE(empty_value.has_value());
    CHECK(empty_value->second.empty());
}

TEST_CASE("ParameterStatus that is cut short or has trailing bytes is rejected", "[messages][readers]") {
    CHECK_FALSE(read_parameter_status(bytes(cstr("server_version") + "15.4")).has_value());
    CHECK_FALSE(read_parameter_status(bytes(cstr("server_version"))).has_value());
    CHECK_FALSE(read_parameter_status(bytes(cstr("a") + cstr("b") + "c")).has_value());
}

// ---- frontend readers -----------------------------------------------------------------

TEST_CASE("Query reads the SQL text", "[messages][readers]") {
    CHECK(read_query(bytes(cstr("SELECT 1; SELECT 2"))) == std::string_view("SELECT 1; SELECT 2"));
    CHECK(read_query(bytes(cstr(""))) == std::string_view(""));
}

TEST_CASE("Query without its NUL or with bytes after it is rejected", "[messages][readers]") {
    CHECK_FALSE(read_query(bytes("SELECT 1")).has_value());
    CHECK_FALSE(read_query(bytes("")).has_value());
    CHECK_FALSE(read_query(bytes(cstr("SELECT 1") + "x")).has_value());
}

TEST_CASE("Parse reads the statement name, query and parameter types", "[messages][readers]") {
    std::string body = cstr("s1") + cstr("SELECT $1::int, $2") + be16(2) + be32(23) + be32(0xFFFFFFFF);
    auto parse = read_parse(bytes(body));
    REQUIRE(parse.has_value());
    CHECK(parse->statement == "s1");
    CHECK(parse->query == "SELECT $1::int, $2");
    CHECK(parse->parameter_types == std::vector<std::uint32_t>{23, 0xFFFFFFFF});
}

TEST_CASE("Parse of an unnamed statement without parameter types is read", "[messages][readers]") {
    const std::string parse_body = cstr("") + cstr("BEGIN") + be16(0);
    auto parse = read_parse(bytes(parse_body));
    REQUIRE(parse.has_value());
    CHECK(parse->statement.empty());
    CHECK(parse->query == "BEGIN");
    CHECK(parse->parameter_types.empty());
}

TEST_CASE("Parse with a wrong parameter count or layout is rejected", "[messages][readers]") {
    CHECK_FALSE(read_parse(bytes(cstr("") + cstr("SELECT $1") + be16(2) + be32(23))).has_value());
    CHECK_FALSE(read_parse(bytes(cstr("") + cstr("SELECT $1") + be16(0xFFFF))).has_value());
    CHECK_FALSE(read_parse(bytes(cstr("") + cstr("SELECT 1") + be16(0) + "x")).has_value());
    CHECK_FALSE(read_parse(bytes(cstr("") + cstr("SELECT 1"))).has_value());
    CHECK_FALSE(read_parse(bytes(cstr("") + "SELECT 1")).has_value());
}

TEST_CASE("Bind reads the portal and statement names and leaves the rest", "[messages][readers]") {
    std::string body = cstr("portal1") + cstr("s1") + be16(1) + be16(0) + be16(1) + be32(2) + "42" + be16(0);
    auto bind = read_bind(bytes(body));
    REQUIRE(bind.has_value());
    CHECK(bind->portal == "portal1");
    CHECK(bind->statement == "s1");

    const std::string unnamed_body = cstr("") + cstr("") + be16(0) + be16(0) + be16(0);
    auto unnamed = read_bind(bytes(unnamed_body));
    REQUIRE(unnamed.has_value());
    CHECK(unnamed->portal.empty());
    CHECK(unnamed->statement.empty());
}

TEST_CASE("Bind whose names lack their NULs is rejected", "[messages][readers]") {
    CHECK_FALSE(read_bind(bytes(cstr("portal1") + "s1")).has_value());
    CHECK_FALSE(read_bind(bytes("portal1")).has_value());
}

TEST_CASE("Describe and Close read an S statement or P portal target and its name", "[messages][readers]") {
    const std::string describe_body = "S" + cstr("s1");
    auto describe = read_describe(bytes(describe_body));
    REQUIRE(describe.has_value());
    CHECK(describe->target == 'S');
    CHECK(describe->name == "s1");

    const std::string close_body = "P" + cstr("");
    auto close = read_close(bytes(close_body));
    REQUIRE(close.has_value());
    CHECK(close->target == 'P');
    CHECK(close->name.empty());

    const std::string close_statement_body = "S" + cstr("s2");
    auto close_statement = read_close(bytes(close_statement_body));
    REQUIRE(close_statement.has_value());
    CHECK(close_statement->target == 'S');
    CHECK(close_statement->name == "s2");
}

TEST_CASE("Describe and Close with another target or a bad layout are rejected", "[messages][readers]") {
    CHECK_FALSE(read_describe(bytes("X" + cstr("s1"))).has_value());
    CHECK_FALSE(read_close(bytes("s" + cstr("s1"))).has_value());
    CHECK_FALSE(read_describe(bytes("S" + std::string("s1"))).has_value());
    CHECK_FALSE(read_describe(bytes("S" + cstr("s1") + "x")).has_value());
    CHECK_FALSE(read_close(bytes("")).has_value());
}

TEST_CASE("Execute reads the portal and the row limit", "[messages][readers]") {
    const std::string execute_body = cstr("portal1") + be32(100);
    auto execute = read_execute(bytes(execute_body));
    REQUIRE(execute.has_value());
    CHECK(execute->portal == "portal1");
    CHECK(execute->max_rows == 100);

    const std::string unlimited_body = cstr("") + be32(0);
    auto unlimited = read_execute(bytes(unlimited_body));
    REQUIRE(unlimited.has_value());
    CHECK(unlimited->portal.empty());
    CHECK(unlimited->max_rows == 0);
}

TEST_CASE("Execute cut short or with trailing bytes is rejected", "[messages][readers]") {
    CHECK_FALSE(read_execute(bytes(cstr("p") + be32(1).substr(0, 2))).has_value());
    CHECK_FALSE(read_execute(bytes(cstr("p"))).has_value());
    CHECK_FALSE(read_execute(bytes(cstr("p") + be32(1) + "x")).has_value());
    CHECK_FALSE(read_execute(bytes("p")).has_value());
}

TEST_CASE("Parse declaring more parameter types than its body holds is rejected before reading them",
          "[messages][readers]") {
    // 32767 declared, none present: refused by the size check, not by reading past the end.
    CHECK_FALSE(read_parse(bytes(cstr("") + cstr("SELECT 1") + be16(0x7FFF))).has_value());
    CHECK_FALSE(read_parse(bytes(cstr("") + cstr("SELECT $1") + be16(2) + be32(23) + "xyz")).has_value());
    auto two = read_parse(bytes(cstr("") + cstr("SELECT $1, $2") + be16(2) + be32(23) + be32(25)));
    REQUIRE(two.has_value());
    CHECK(two->parameter_types == std::vector<std::uint32_t>{23, 25});
}

TEST_CASE("SASLInitialResponse reads the mechanism and the initial response", "[messages][readers]") {
    const std::string body = cstr("SCRAM-SHA-256") + be32(8) + "n,,n=,r=";
    auto response = read_sasl_initial_response(bytes(body));
    REQUIRE(response.has_value());
    CHECK(response->mechanism == "SCRAM-SHA-256");
    CHECK(response->data == "n,,n=,r=");
}

TEST_CASE("SASLInitialResponse with length -1 has no initial response", "[messages][readers]") {
    const std::string body = cstr("SCRAM-SHA-256") + be32(0xFFFFFFFF);
    auto response = read_sasl_initial_response(bytes(body));
    REQUIRE(response.has_value());
    CHECK(response->data.empty());
}

TEST_CASE("SASLInitialResponse with a bad length or trailing bytes is rejected", "[messages][readers]") {
    CHECK_FALSE(read_sasl_initial_response(bytes(cstr("SCRAM-SHA-256") + be32(0xFFFFFFFE))).has_value());
    CHECK_FALSE(read_sasl_initial_response(bytes(cstr("SCRAM-SHA-256") + be32(0x7FFFFFFF) + "abc")).has_value());
    CHECK_FALSE(read_sasl_initial_response(bytes(cstr("SCRAM-SHA-256") + be32(2) + "abc")).has_value());
    CHECK_FALSE(read_sasl_initial_response(bytes(cstr("SCRAM-SHA-256") + be32(4) + "abc")).has_value());
    CHECK_FALSE(read_sasl_initial_response(bytes(cstr("SCRAM-SHA-256") + be16(1))).has_value());
    CHECK_FALSE(read_sasl_initial_response(bytes("SCRAM-SHA-256")).has_value());
}
