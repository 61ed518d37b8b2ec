// A client's statement must never exhaust a worker's stack: libpg_query and protobuf-c
// recurse once per tree level, so very deep statements are refused (primary) unparsed.

#include "routing/classifier.hpp"
#include "routing/parse_limits.hpp"

#include <catch2/catch.hpp>

#include <pthread.h>

#include <functional>
#include <string>

using pglane::routing::classify;
using pglane::routing::Classification;

namespace {

std::string plus_chain(int terms) {
    std::string sql = "SELECT 1";
    for (int i = 0; i < terms; ++i) sql += " + 1";
    return sql;
}

std::string union_chain(int selects) {
    std::string sql = "SELECT 1";
    for (int i = 0; i < selects; ++i) sql += " UNION ALL SELECT 1";
    return sql;
}

/// Runs `work` on a thread with a small stack, as a worker with less room than main has.
void on_small_stack(std::size_t stack_bytes, const std::function<void()>& work) {
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, stack_bytes);
    pthread_t thread;
    auto trampoline = [](void* argument) -> void* {
        (*static_cast<const std::function<void()>*>(argument))();
        return nullptr;
    };
    REQUIRE(pthread_create(&thread, &attributes, trampoline, const_cast<std::function<void()>*>(&work)) == 0);
    pthread_join(thread, nullptr);
    pthread_attr_destroy(&attributes);
}

}  // namespace

TEST_CASE("a chain of 50,000 operators is refused unparsed instead of crashing") {
    const Classification c = classify(plus_chain(50000));
    CHECK_FALSE(c.parsed);
    CHECK_FALSE(c.read_only);
    CHECK(c.reason == "unparseable: statement nested too deeply to classify");
}

TEST_CASE("a UNION of 20,000 selects is refused unparsed") {
    const Classification c = classify(union_chain(20000));
    CHECK_FALSE(c.parsed);
    CHECK(c.reason == "unparseable: statement nested too deeply to classify");
}

TEST_CASE("deep statements are refused even on a 2 MiB stack") {
    Classification deep_chain, near_threshold, deep_union, accepted;
    on_small_stack(2u << 20, [&] {
        deep_chain = classify(plus_chain(5000));
        near_threshold = classify(plus_chain(510));  // just under the length that triggers a scan
        deep_union = classify(union_chain(3000));
        accepted = classify(plus_chain(200));
    });
    CHECK_FALSE(deep_chain.parsed);
    CHECK(near_threshold.parsed);
    CHECK(near_threshold.read_only);
    CHECK_FALSE(deep_union.parsed);
    CHECK(accepted.parsed);
    CHECK(accepted.read_only);
}

TEST_CASE("long but flat statements are still classified") {
    std::string in_list = "SELECT * FROM t WHERE id IN (1";
    for (int i = 2; i <= 5000; ++i) in_list += ", " + std::to_string(i);
    in_list += ")";
    const Classification read = classify(in_list);
    CHECK(read.parsed);
    CHECK(read.read_only);

    std::string bulk_insert = "INSERT INTO t (a, b) VALUES (0, 'x')";
    for (int i = 1; i < 2000; ++i) bulk_insert += ", (" + std::to_string(i) + ", 'x')";
    const Classification write = classify(bulk_insert);
    CHECK(write.parsed);
    CHECK_FALSE(write.read_only);
    CHECK(write.reason == "INSERT");

    std::string wide = "SELECT ";
    for (int i = 0; i < 300; ++i) wide += "lower(c" + std::to_string(i) + "), ";
    wide += "1 FROM t WHERE a = 1 AND b = 2";
    const Classification wide_read = classify(wide);
    CHECK(wide_read.parsed);
    CHECK(wide_read.read_only);
    CHECK(wide_read.functions == std::vector<std::string>{"lower"});
}

TEST_CASE("the message-nesting reader rejects malformed bytes") {
    const std::uint8_t truncated[] = {0x12, 0x05, 0x0a};  // a 5-byte field with 1 byte present
    CHECK(pglane::routing::message_nesting(truncated, sizeof truncated, 100) == SIZE_MAX);
    const std::uint8_t bad_wire_type[] = {0x0f};
    CHECK(pglane::routing::message_nesting(bad_wire_type, sizeof bad_wire_type, 100) == SIZE_MAX);
    CHECK(pglane::routing::message_nesting(nullptr, 0, 100) == 1);
}
