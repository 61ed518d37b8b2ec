#include "routing/classifier.hpp"
#include "routing/session_router.hpp"

#include <catch2/catch.hpp>

using namespace pglane::routing;

namespace {

struct Routed {
    RouteDecision decision;
};

RouteDecision route(SessionRouter& router, std::initializer_list<const char*> sqls, const FunctionCatalog* catalog,
                    bool in_transaction = false) {
    std::vector<Classification> classified;
    for (const char* sql : sqls) classified.push_back(classify(sql));
    std::vector<const Classification*> unit;
    for (const auto& c : classified) unit.push_back(&c);
    return router.route(unit, catalog, in_transaction);
}

void complete(SessionRouter& router, const char* sql, bool on_primary) {
    Classification c = classify(sql);
    const Classification* unit[] = {&c};
    router.completed(unit, on_primary);
}

FunctionCatalog catalog() {
    FunctionCatalog c;
    c.add("pg_catalog", "current_setting", 's');
    c.add("pg_catalog", "now", 's');
    c.add("pg_catalog", "nextval", 'v');
    c.add("pg_catalog", "random", 'v');
    c.add("pg_catalog", "lower", 'i');
    c.add("public", "report", 's');
    c.add("audit", "report", 'v');
    return c;
}

}  // namespace

TEST_CASE("a plain read goes to a standby") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    auto d = route(router, {"SELECT * FROM accounts WHERE id = 1"}, &functions);
    REQUIRE(d.destination == Destination::standby);
    REQUIRE_FALSE(d.needs_replay_check);
}

TEST_CASE("a write goes to the primary with the classifier's reason") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    auto d = route(router, {"INSERT INTO accounts VALUES (1)"}, &functions);
    REQUIRE(d.destination == Destination::primary);
    REQUIRE_FALSE(d.reason.empty());
}

TEST_CASE("a read calling a volatile function goes to the primary and says which") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    auto d = route(router, {"SELECT nextval('s')"}, &functions);
    REQUIRE(d.destination == Destination::primary);
    REQUIRE(d.reason == "volatile function nextval");
}

TEST_CASE("stable and immutable functions keep a read on a standby") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"SELECT lower(name), now() FROM t"}, &functions).destination == Destination::standby);
}

TEST_CASE("an unqualified name takes the most volatile function of that name") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"SELECT report()"}, &functions).destination == Destination::primary);
    REQUIRE(route(router, {"SELECT public.report()"}, &functions).destination == Destination::standby);
}

TEST_CASE("unknown functions and an unknown catalog keep reads on the primary") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"SELECT mystery(1)"}, &functions).reason == "unknown function mystery");
    REQUIRE(route(router, {"SELECT lower('a')"}, nullptr).destination == Destination::primary);
}

TEST_CASE("read_only_functions and write_functions override the catalog") {
    RoutingPolicy policy;
    policy.read_only_functions.insert("random");
    policy.write_functions.insert("lower");
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"SELECT random()"}, &functions).destination == Destination::standby);
    REQUIRE(route(router, {"SELECT lower('a')"}, &functions).reason == "write function lower");
}

TEST_CASE("inside a transaction every unit stays on the transaction's node") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    auto d = route(router, {"SELECT 1"}, &functions, true);
    REQUIRE(d.destination == Destination::current);
}

TEST_CASE("BEGIN goes to the primary and BEGIN READ ONLY to a standby") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"BEGIN"}, &functions).destination == Destination::primary);
    REQUIRE(route(router, {"BEGIN READ ONLY"}, &functions).destination == Destination::standby);
}

TEST_CASE("unparseable SQL goes to the primary") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"SELEC 1"}, &functions).destination == Destination::primary);
}

TEST_CASE("a temporary table pins the session to the primary until DISCARD ALL") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    complete(router, "CREATE TEMP TABLE scratch (id int)", true);
    REQUIRE(router.pin() == PinReason::temporary_table);
    REQUIRE(route(router, {"SELECT 1"}, &functions).reason == "pinned: temporary_table");
    complete(router, "DISCARD ALL", true);
    REQUIRE(router.pin() == PinReason::none);
    REQUIRE(route(router, {"SELECT 1"}, &functions).destination == Destination::standby);
}

TEST_CASE("after a write, reads need a standby that replayed it (lsn mode)") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    complete(router, "UPDATE accounts SET balance = 0", true);
    REQUIRE(router.write_lsn_unknown());
    auto d = route(router, {"SELECT 1"}, &functions);
    REQUIRE(d.destination == Destination::standby);
    REQUIRE(d.needs_replay_check);
    router.write_lsn_known(42);
    REQUIRE_FALSE(router.write_lsn_unknown());
    REQUIRE(router.write_lsn() == 42);
}

TEST_CASE("SET, BEGIN and COMMIT are not writes for read-your-writes") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    complete(router, "SET search_path TO app", true);
    complete(router, "BEGIN", true);
    complete(router, "COMMIT", true);
    REQUIRE_FALSE(router.wrote());
}

TEST_CASE("read-your-writes session mode keeps reads on the primary after a write") {
    RoutingPolicy policy;
    policy.read_your_writes = ReadYourWrites::session;
    SessionRouter router(policy);
    auto functions = catalog();
    complete(router, "DELETE FROM t", true);
    REQUIRE(route(router, {"SELECT 1"}, &functions).destination == Destination::primary);
}

TEST_CASE("read-your-writes off sends reads to standbys right after a write") {
    RoutingPolicy policy;
    policy.read_your_writes = ReadYourWrites::off;
    SessionRouter router(policy);
    auto functions = catalog();
    complete(router, "DELETE FROM t", true);
    auto d = route(router, {"SELECT 1"}, &functions);
    REQUIRE(d.destination == Destination::standby);
    REQUIRE_FALSE(d.needs_replay_check);
}

TEST_CASE("SET pglane.route steers reads, never writes, to a standby") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(router.set_route("primary"));
    REQUIRE(route(router, {"SELECT 1"}, &functions).destination == Destination::primary);
    REQUIRE(router.set_route("standby"));
    REQUIRE(route(router, {"SELECT random()"}, &functions).destination == Destination::standby);
    REQUIRE(route(router, {"SELECT nextval('s')"}, &functions).destination == Destination::primary);
    REQUIRE(route(router, {"INSERT INTO t VALUES (1)"}, &functions).destination == Destination::primary);
    REQUIRE_FALSE(router.set_route("elsewhere"));
    REQUIRE(router.set_route(std::nullopt));
    REQUIRE(router.route_setting() == RouteHint::auto_);
}

TEST_CASE("a route comment steers one statement") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"/* pglane: route=primary */ SELECT 1"}, &functions).reason == "route hint comment");
    REQUIRE(route(router, {"SELECT 1"}, &functions).destination == Destination::standby);
}

TEST_CASE("a unit is read-only only if every statement in it is") {
    RoutingPolicy policy;
    SessionRouter router(policy);
    auto functions = catalog();
    REQUIRE(route(router, {"SELECT 1", "SELECT 2"}, &functions).destination == Destination::standby);
    REQUIRE(route(router, {"SELECT 1", "UPDATE t SET a = 1"}, &functions).destination == Destination::primary);
}
