#include "protocol/md5_auth.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pglane::protocol::md5;

namespace {

// What PostgreSQL 15 stores after SET password_encryption = 'md5';
// CREATE ROLE md5user LOGIN PASSWORD 'secret'; (= "md5" + md5("secretmd5user")).
const std::string pg_md5user_hash = "md52aea419619857e8a27f0f7aa641db0c6";
const std::string salt = std::string("\x01\x02\xfe\x00", 4);

}  // namespace

TEST_CASE("the md5 password hash equals what PostgreSQL stores") {
    REQUIRE(password_hash("md5user", "secret") == pg_md5user_hash);
}

TEST_CASE("the salted response hashes the stored hash with the salt") {
    // Expected values computed independently (Python hashlib): md5(hex(md5(password + user)) + salt).
    // The salt is 4 raw bytes and may hold a NUL.
    REQUIRE(salted_response(pg_md5user_hash, salt) == "md5397e7274149d25b97ce5969ff8a7a9ca");
    REQUIRE(salted_response(password_hash("postgres", "postgres"), "abcd") == "md50800ba833a175e428fc0110c29998942");
}

TEST_CASE("the right response is accepted against a stored md5 hash") {
    REQUIRE(check_response(pg_md5user_hash, "md5user", salt, salted_response(pg_md5user_hash, salt)));
}

TEST_CASE("the right response is accepted against a stored plaintext password") {
    REQUIRE(check_response("secret", "md5user", salt, salted_response(pg_md5user_hash, salt)));
}

TEST_CASE("a wrong md5 response is refused") {
    auto right = salted_response(pg_md5user_hash, salt);
    REQUIRE_FALSE(check_response(pg_md5user_hash, "md5user", salt, salted_response(password_hash("md5user", "Secret"), salt)));
    REQUIRE_FALSE(check_response("secret", "otheruser", salt, right));  // the user name is part of the hash
    REQUIRE_FALSE(check_response(pg_md5user_hash, "md5user", "abcd", right));  // another salt
    REQUIRE_FALSE(check_response(pg_md5user_hash, "md5user", salt, right.substr(0, 34)));
    REQUIRE_FALSE(check_response(pg_md5user_hash, "md5user", salt, ""));
}

TEST_CASE("an empty secret or a SCRAM verifier never accepts an md5 response") {
    REQUIRE_FALSE(check_response("", "md5user", salt, salted_response(password_hash("md5user", ""), salt)));
    const std::string verifier =
        "SCRAM-SHA-256$4096:BXY4NLz2pNveZgT7YDZX6g==$maQ9bFo1YkL0PhGwKKG+Gywydg/KzC4bynlx3WpyUXM=:"
        "u0R6gnguGuUC+R1YIK6WBwkh6XZccNQvkPtULmqHUoM=";
    REQUIRE_FALSE(check_response(verifier, "md5user", salt, salted_response(password_hash("md5user", verifier), salt)));
}

TEST_CASE("only md5 plus 32 lowercase hex digits is an md5 hash") {
    REQUIRE(is_md5_hash(pg_md5user_hash));
    REQUIRE_FALSE(is_md5_hash("md52AEA419619857e8a27f0f7aa641db0c6"));
    REQUIRE_FALSE(is_md5_hash("md52aea419619857e8a27f0f7aa641db0c"));
    REQUIRE_FALSE(is_md5_hash("md52aea419619857e8a27f0f7aa641db0c6a"));
    REQUIRE_FALSE(is_md5_hash("xyz2aea419619857e8a27f0f7aa641db0c6"));
    REQUIRE_FALSE(is_md5_hash("secret"));
}
