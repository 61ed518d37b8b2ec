#include "proxy/client_limits.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <vector>

using pglane::proxy::ClientLimits;
using pglane::proxy::Limits;
using Verdict = ClientLimits::Verdict;

namespace {

Limits limits(std::uint32_t total, std::uint32_t per_user = 0) {
    Limits l;
    l.max_client_connections = total;
    l.max_client_connections_per_user = per_user;
    return l;
}

}  // namespace

TEST_CASE("the session after max_client_connections is refused until one ends") {
    ClientLimits counted(limits(3));
    std::vector<std::unique_ptr<ClientLimits::Slot>> open;
    for (const char* user : {"a", "b", "a"}) {
        open.push_back(std::make_unique<ClientLimits::Slot>());
        REQUIRE(counted.admit(*open.back(), user) == Verdict::admitted);
    }
    ClientLimits::Slot fourth;
    REQUIRE(counted.admit(fourth, "c") == Verdict::over_total);
    REQUIRE_FALSE(fourth.held());
    REQUIRE(counted.sessions() == 3);
    open.erase(open.begin());  // a session ends: its slot gives its share back
    REQUIRE(counted.sessions() == 2);
    REQUIRE(counted.admit(fourth, "c") == Verdict::admitted);
    REQUIRE(counted.sessions() == 3);
}

TEST_CASE("a user at its per-user limit is refused while other users are admitted") {
    ClientLimits counted(limits(0, 2));
    ClientLimits::Slot a1, a2, a3, b1;
    REQUIRE(counted.admit(a1, "alice") == Verdict::admitted);
    REQUIRE(counted.admit(a2, "alice") == Verdict::admitted);
    REQUIRE(counted.admit(a3, "alice") == Verdict::over_user);
    REQUIRE(counted.admit(b1, "bob") == Verdict::admitted);
    REQUIRE(counted.sessions_of("alice") == 2);
    REQUIRE(counted.sessions_of("bob") == 1);
    REQUIRE(counted.sessions() == 3);
}

TEST_CASE("a per-user override replaces the per-user default, 0 meaning no limit") {
    Limits l = limits(0, 1);
    l.max_client_connections_by_user = {{"batch", 3}, {"admin", 0}};
    ClientLimits counted(l);
    REQUIRE(counted.user_limit("batch") == 3);
    REQUIRE(counted.user_limit("admin") == 0);
    REQUIRE(counted.user_limit("anyone") == 1);
    std::vector<std::unique_ptr<ClientLimits::Slot>> open;
    auto admit = [&](const char* user) {
        open.push_back(std::make_unique<ClientLimits::Slot>());
        return counted.admit(*open.back(), user);
    };
    REQUIRE(admit("batch") == Verdict::admitted);
    REQUIRE(admit("batch") == Verdict::admitted);
    REQUIRE(admit("batch") == Verdict::admitted);
    REQUIRE(admit("batch") == Verdict::over_user);
    for (int i = 0; i < 10; ++i) REQUIRE(admit("admin") == Verdict::admitted);
    REQUIRE(admit("anyone") == Verdict::admitted);
    REQUIRE(admit("anyone") == Verdict::over_user);
}

TEST_CASE("the global limit counts every user and is checked before the per-user one") {
    ClientLimits counted(limits(2, 5));
    ClientLimits::Slot a, b, c;
    REQUIRE(counted.admit(a, "alice") == Verdict::admitted);
    REQUIRE(counted.admit(b, "bob") == Verdict::admitted);
    REQUIRE(counted.admit(c, "carol") == Verdict::over_total);
}

TEST_CASE("the startup phase admits the slot attached to the client's socket") {
    ClientLimits counted(limits(1));
    ClientLimits::Slot first;
    {
        ClientLimits::Attachment attached(counted, 17, first);
        REQUIRE(counted.admit(17, "alice") == Verdict::admitted);
        REQUIRE(first.held());
        // The socket number reused by a newer session before the old one's coroutine ended:
        // the newer slot is the one admitted (and refused, the limit being 1).
        ClientLimits::Slot second;
        ClientLimits::Attachment reused(counted, 17, second);
        REQUIRE(counted.admit(17, "bob") == Verdict::over_total);
        REQUIRE_FALSE(second.held());
    }
    // No slot attached to a socket: admitted, not counted.
    REQUIRE(counted.admit(99, "carol") == Verdict::admitted);
    REQUIRE(counted.sessions() == 1);
}

TEST_CASE("refusals name the config key that refused") {
    Limits l = limits(10, 2);
    l.max_client_connections_by_user = {{"batch", 4}};
    ClientLimits counted(l);
    REQUIRE(counted.refusal_message(Verdict::over_total, "x") ==
            "sorry, too many clients already (pglane limits.max_client_connections = 10)");
    REQUIRE(counted.refusal_message(Verdict::over_user, "alice") ==
            "too many connections for user \"alice\" (pglane limits.max_client_connections_per_user = 2)");
    REQUIRE(counted.refusal_message(Verdict::over_user, "batch") ==
            "too many connections for user \"batch\" (pglane limits.max_client_connections_by_user = 4)");
}

TEST_CASE("without limits every session is admitted and still counted") {
    ClientLimits counted(Limits{});
    std::vector<std::unique_ptr<ClientLimits::Slot>> open;
    for (int i = 0; i < 1000; ++i) {
        open.push_back(std::make_unique<ClientLimits::Slot>());
        REQUIRE(counted.admit(*open.back(), "u") == Verdict::admitted);
    }
    REQUIRE(counted.sessions() == 1000);
    open.clear();
    REQUIRE(counted.sessions() == 0);
    REQUIRE(counted.sessions_of("u") == 0);
}

namespace {

std::string config_error(const std::string& limits_json) {
    try {
        (void)pglane::proxy::parse_config(R"({"listen":{"rw":"h:1"},"nodes":[{"name":"a","host":"h","port":1}],"limits":)" +
                                          limits_json + "}");
    } catch (const pglane::proxy::ConfigError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("the connection limits are read from the limits section") {
    auto config = pglane::proxy::parse_config(
        R"({"listen":{"rw":"h:1"},"nodes":[{"name":"a","host":"h","port":1}],
            "limits":{"max_client_connections":10000,"max_client_connections_per_user":50,
                      "max_client_connections_by_user":{"batch":200,"admin":0}}})");
    REQUIRE(config.limits.max_client_connections == 10000);
    REQUIRE(config.limits.max_client_connections_per_user == 50);
    REQUIRE(config.limits.max_client_connections_by_user.at("batch") == 200);
    REQUIRE(config.limits.max_client_connections_by_user.at("admin") == 0);
    auto defaults = pglane::proxy::parse_config(R"({"listen":{"rw":"h:1"},"nodes":[{"name":"a","host":"h","port":1}]})");
    REQUIRE(defaults.limits.max_client_connections == 0);
    REQUIRE(defaults.limits.max_client_connections_per_user == 0);
    REQUIRE(defaults.limits.max_client_connections_by_user.empty());
}

TEST_CASE("connection limit errors name the key") {
    REQUIRE(config_error(R"({"max_client_connections":-1})") ==
            R"(config key "limits.max_client_connections": must be between 0 and 10000000)");
    REQUIRE(config_error(R"({"max_client_connections_per_user":"many"})") ==
            R"(config key "limits.max_client_connections_per_user": must be an integer)");
    REQUIRE(config_error(R"({"max_client_connections_by_user":[1]})") ==
            R"(config key "limits.max_client_connections_by_user": must be an object)");
    REQUIRE(config_error(R"({"max_client_connections_by_user":{"alice":1.5}})") ==
            R"(config key "limits.max_client_connections_by_user.alice": must be an integer)");
    REQUIRE(config_error(R"({"max_clients":1})") == R"(config key "limits.max_clients": unknown key)");
}

TEST_CASE("a reload's limits apply to the next sessions; those already over them stay") {
    ClientLimits counted(limits(0));
    ClientLimits::Slot first, second, third;
    REQUIRE(counted.admit(first, "a") == Verdict::admitted);
    REQUIRE(counted.admit(second, "a") == Verdict::admitted);
    counted.set_limits(limits(0, 1));
    CHECK(counted.admit(third, "a") == Verdict::over_user);
    CHECK(counted.refusal_message(Verdict::over_user, "a").find("max_client_connections_per_user = 1") !=
          std::string::npos);
    CHECK(counted.sessions_of("a") == 2);
    CHECK(counted.admit(third, "b") == Verdict::admitted);
    ClientLimits::Slot fourth;
    counted.set_limits(limits(3));
    CHECK(counted.admit(fourth, "c") == Verdict::over_total);
}
