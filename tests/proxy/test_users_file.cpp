#include "proxy/users_file.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <unistd.h>
#include <fstream>
#include <string>

using pglane::proxy::load_users_file;
using pglane::proxy::parse_users_file;
using pglane::proxy::UserSecret;
using pglane::proxy::UsersFile;

namespace {

const std::string verifier =
    "SCRAM-SHA-256$4096:BXY4NLz2pNveZgT7YDZX6g==$maQ9bFo1YkL0PhGwKKG+Gywydg/KzC4bynlx3WpyUXM=:"
    "u0R6gnguGuUC+R1YIK6WBwkh6XZccNQvkPtULmqHUoM=";

UsersFile parse_ok(const std::string& text) {
    std::string error;
    auto users = parse_users_file(text, error);
    INFO(error);
    REQUIRE(users);
    return *users;
}

std::string error_of(const std::string& text) {
    std::string error;
    auto users = parse_users_file(text, error);
    CHECK_FALSE(users);
    return error;
}

}  // namespace

TEST_CASE("a users file line gives the quoted user and secret") {
    auto users = parse_ok("\"alice\" \"wonderland\"\n");
    REQUIRE(users.size() == 1);
    REQUIRE(users.users()[0].user == "alice");
    REQUIRE(users.users()[0].secret == "wonderland");
}

TEST_CASE("doubled quotes inside a field are one literal quote") {
    auto users = parse_ok(R"("say ""hi""" "pa""ss word")");
    REQUIRE(users.users()[0].user == "say \"hi\"");
    REQUIRE(users.users()[0].secret == "pa\"ss word");
}

TEST_CASE("comments, blank lines, CRLF endings and extra whitespace are skipped") {
    auto users = parse_ok("; PgBouncer-style comment\r\n"
                          "# another comment\n"
                          "\n"
                          "   \t\n"
                          "  \"alice\"\t  \"a\"   \r\n"
                          "\"bob\" \"b\"");
    REQUIRE(users.size() == 2);
    REQUIRE(users.users()[0].secret == "a");
    REQUIRE(users.users()[1].user == "bob");
}

TEST_CASE("anything after the second field is ignored, as PgBouncer does") {
    auto users = parse_ok("\"alice\" \"a\" \"extra\" field\n");
    REQUIRE(users.users()[0].secret == "a");
}

TEST_CASE("the kind of each secret is detected") {
    auto users = parse_ok("\"plain\" \"secret\"\n"
                          "\"hashed\" \"md52aea419619857e8a27f0f7aa641db0c6\"\n"
                          "\"scram\" \"" + verifier + "\"\n"
                          "\"almost\" \"md52AEA419619857e8a27f0f7aa641db0c6\"\n");
    REQUIRE(users.find("plain")->kind == UserSecret::Kind::plaintext);
    REQUIRE(users.find("hashed")->kind == UserSecret::Kind::md5);
    REQUIRE(users.find("scram")->kind == UserSecret::Kind::scram);
    REQUIRE(users.find("almost")->kind == UserSecret::Kind::plaintext);  // uppercase hex: not a hash
}

TEST_CASE("find matches the exact user name or returns null") {
    auto users = parse_ok("\"alice\" \"a\"\n\"Alice\" \"b\"\n");
    REQUIRE(users.find("alice")->secret == "a");
    REQUIRE(users.find("Alice")->secret == "b");
    REQUIRE(users.find("ALICE") == nullptr);
    REQUIRE(users.find("") == nullptr);
}

TEST_CASE("a malformed line is an error naming its line number") {
    REQUIRE(error_of("\"alice\" \"a\"\nbob \"b\"\n").starts_with("line 2:"));
    REQUIRE(error_of("# c\n\n\"alice\" \"a\n").starts_with("line 3:"));      // unterminated quote
    REQUIRE(error_of("\"alice\"\n").starts_with("line 1:"));                   // no secret
    REQUIRE(error_of("\"alice\"\"a\"\n").starts_with("line 1:"));              // one field: alice"a
    REQUIRE(error_of("\"alice\" a\n").starts_with("line 1:"));                 // unquoted secret
    REQUIRE(error_of("\"\" \"a\"\n").starts_with("line 1:"));                  // empty user name
    REQUIRE(error_of("\"alice\" \"SCRAM-SHA-256$4096:broken\"\n").find("malformed SCRAM verifier") !=
            std::string::npos);
}

TEST_CASE("a user listed twice is an error naming both lines") {
    auto error = error_of("\"alice\" \"a\"\n\"bob\" \"b\"\n\"alice\" \"c\"\n");
    REQUIRE(error.starts_with("line 3:"));
    REQUIRE(error.find("line 1") != std::string::npos);
}

TEST_CASE("an empty users file has no users") {
    REQUIRE(parse_ok("").size() == 0);
    REQUIRE(parse_ok("# only a comment\n").size() == 0);
}

TEST_CASE("a users file is loaded from disk and a missing one is an error naming it") {
    auto path = std::string("/tmp/pglane_test_users_") + std::to_string(::getpid()) + ".txt";
    {
        std::ofstream out(path);
        out << "\"alice\" \"a\"\n\"bob\n";
    }
    std::string error;
    REQUIRE_FALSE(load_users_file(path, error));
    REQUIRE(error.find(path) != std::string::npos);
    REQUIRE(error.find("line 2") != std::string::npos);
    {
        std::ofstream out(path);
        out << "\"alice\" \"a\"\n";
    }
    auto users = load_users_file(path, error);
    REQUIRE(users);
    REQUIRE(users->find("alice")->secret == "a");
    std::remove(path.c_str());

    REQUIRE_FALSE(load_users_file(path, error));
    REQUIRE(error.find(path) != std::string::npos);
}
