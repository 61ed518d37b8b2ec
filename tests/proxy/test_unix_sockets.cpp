// Unix-domain sockets: the listener's file (proxy/unix_listener.hpp), how a peer on one is
// named, and a Stream telling the families apart.

#include "proxy/sql_text.hpp"
#include "proxy/stream.hpp"
#include "proxy/unix_listener.hpp"
#include "tests/support/loopback_pair.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <grp.h>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <system_error>
#include <unistd.h>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using pglane::proxy::StreamSocket;
using pglane::proxy::UnixListener;

namespace {

/// A fresh directory under /tmp, removed with its contents at the end of the test.
struct TempDir {
    std::string path;
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "pglane-unix-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() { fs::remove_all(path); }
};

/// Whether a client can connect to the socket file at `path`.
bool connects(const std::string& path) {
    asio::io_context io;
    asio::local::stream_protocol::socket client(io);
    boost::system::error_code ec;
    client.connect(asio::local::stream_protocol::endpoint(path), ec);
    return !ec;
}

}  // namespace

TEST_CASE("a Unix listener binds <dir>/.s.PGSQL.<port> with its mode and removes it at the end", "[unix]") {
    TempDir dir;
    const std::string path = dir.path + "/.s.PGSQL.6432";
    {
        UnixListener listener(dir.path, 6432, 0770);
        CHECK(listener.path() == path);
        struct stat info {};
        REQUIRE(::stat(path.c_str(), &info) == 0);
        CHECK(S_ISSOCK(info.st_mode));
        CHECK((info.st_mode & 0777) == 0770);
        CHECK(connects(path));
    }
    CHECK_FALSE(fs::exists(path));
}

TEST_CASE("a Unix listener replaces a stale socket file and refuses one in use", "[unix]") {
    TempDir dir;
    const std::string path = dir.path + "/.s.PGSQL.6433";
    asio::io_context io;
    {
        // Bound and closed, never unlinked: what a killed process leaves.
        asio::local::stream_protocol::acceptor left(io, asio::local::stream_protocol::endpoint(path));
    }
    REQUIRE(fs::exists(path));
    REQUIRE_FALSE(connects(path));
    {
        UnixListener listener(dir.path, 6433, 0777);
        CHECK(connects(path));
        try {
            UnixListener second(dir.path, 6433, 0777);
            FAIL("a second listener took the socket");
        } catch (const std::system_error& e) {
            CHECK(std::string(e.what()).find("cannot listen on " + path + ": something accepts on it already") == 0);
        }
        CHECK(connects(path));   // the refused one left the file alone
    }
    CHECK_FALSE(fs::exists(path));
}

TEST_CASE("a Unix listener gives its file the configured group, and names a group that does not exist", "[unix]") {
    TempDir dir;
    const ::group* own = ::getgrgid(::getegid());
    REQUIRE(own != nullptr);
    const std::string own_name = own->gr_name;
    const gid_t own_gid = own->gr_gid;
    {
        UnixListener listener(dir.path, 6434, 0770, own_name);
        struct stat info {};
        REQUIRE(::stat(listener.path().c_str(), &info) == 0);
        CHECK(info.st_gid == own_gid);
        CHECK((info.st_mode & 0777) == 0770);
    }
    try {
        UnixListener listener(dir.path, 6435, 0770, "pglane-no-such-group");
        FAIL("a listener took a group that does not exist");
    } catch (const std::system_error& e) {
        CHECK(std::string(e.what()).find("no group \"pglane-no-such-group\" (listen.unix_socket_group)") == 0);
    }
    CHECK_FALSE(fs::exists(dir.path + "/.s.PGSQL.6435"));
}

TEST_CASE("a peer is named by address and port over TCP, [local] over a Unix-domain socket", "[unix]") {
    pglane::test::LoopbackPair tcp_pair;
    StreamSocket accepted(std::move(tcp_pair.accepted));
    const auto port = tcp_pair.connecting.local_endpoint().port();
    CHECK(pglane::proxy::describe_peer(accepted) == "127.0.0.1:" + std::to_string(port));
    pglane::proxy::Stream tcp_stream(std::move(accepted));
    CHECK_FALSE(tcp_stream.unix_domain());

    asio::io_context io;
    asio::local::stream_protocol::socket a(io), b(io);
    asio::local::connect_pair(a, b);
    StreamSocket local(std::move(b));
    CHECK(pglane::proxy::describe_peer(local) == "[local]");
    pglane::proxy::Stream unix_stream(std::move(local));
    CHECK(unix_stream.unix_domain());
}
