// Big-endian loads and BodyReader: the ground every decoder stands on.

#include "protocol/bytes.hpp"
#include "tests/support/messages.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pglane::protocol;
using namespace pglane::test;

TEST_CASE("integers load big-endian, high bytes included", "[bytes]") {
    std::string four{'\x80', '\x01', '\xFF', '\x00'};
    CHECK(load_u32(bytes(four).data()) == 0x8001FF00u);
    CHECK(load_u16(bytes(four).data()) == 0x8001u);
}

TEST_CASE("a BodyReader reads fields front to back", "[bytes]") {
    std::string body = std::string{'\x07'} + be16(0xFFFE) + be32(0xFFFFFFFF) + cstr("name") + "tail";
    BodyReader reader(bytes(body));
    CHECK(reader.u8() == 7);
    CHECK(reader.i16() == -2);
    CHECK(reader.i32() == -1);
    CHECK(reader.cstring() == "name");
    CHECK(text(reader.remaining()) == "tail");
    CHECK_FALSE(reader.at_end());
    CHECK(text(reader.bytes(4)) == "tail");
    CHECK(reader.at_end());
    CHECK_FALSE(reader.failed());
}

TEST_CASE("a BodyReader read past the end fails and stays failed", "[bytes]") {
    std::string body = be16(1) + "abc";
    BodyReader reader(bytes(body));
    CHECK(reader.u32() == 0x00016162u);
    CHECK(reader.u16() == 0);   // only one byte left
    CHECK(reader.failed());
    CHECK(reader.at_end());
    CHECK(reader.u8() == 0);    // nothing comes back once failed
    CHECK(reader.cstring().empty());
    CHECK(reader.failed());
}

TEST_CASE("a BodyReader string without its NUL fails", "[bytes]") {
    std::string body = "no terminator";
    BodyReader reader(bytes(body));
    CHECK(reader.cstring().empty());
    CHECK(reader.failed());
}

TEST_CASE("a BodyReader reads an empty string from a lone NUL", "[bytes]") {
    std::string body = cstr("");
    BodyReader reader(bytes(body));
    CHECK(reader.cstring().empty());
    CHECK_FALSE(reader.failed());
    CHECK(reader.at_end());
}

TEST_CASE("as_bytes and as_text view the same characters", "[bytes]") {
    std::string_view sql = "SELECT 1";
    Bytes b = as_bytes(sql);
    CHECK(b.size() == sql.size());
    CHECK(as_text(b) == sql);
    CHECK(as_text(b).data() == sql.data());
}
