#pragma once
// Two connected TCP sockets on 127.0.0.1 and the io_context they run on, for unit tests of
// what reads and writes sockets.

#include <boost/asio.hpp>

namespace pglane::test {

/// Connects `connecting` to a fresh listener on 127.0.0.1 and puts the accepted end in
/// `accepted` (both on `io`).
inline void connect_loopback(boost::asio::io_context& io, boost::asio::ip::tcp::socket& connecting,
                             boost::asio::ip::tcp::socket& accepted) {
    using tcp = boost::asio::ip::tcp;
    tcp::acceptor acceptor(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    connecting.connect(acceptor.local_endpoint());
    accepted = acceptor.accept();
}

struct LoopbackPair {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket connecting{io};
    boost::asio::ip::tcp::socket accepted{io};

    LoopbackPair() { connect_loopback(io, connecting, accepted); }
};

}  // namespace pglane::test
