// Fuzz target: the startup phase as a session runs it. Bytes arrive in arbitrary pieces into
// the session's receive buffer (proxy::ByteBuffer, the real one), and protocol::StartupPhase
// decides on each packet until the session starts, is refused, or forwards a cancel.
// Invariants: no decision consumes more than arrived, the buffer never needs more room than
// the configured maximum, a full buffer is never left waiting, encryption is declined at
// most once per kind, and a StartupMessage that starts a session encodes back to its bytes.
//
// Input: piece-size seed byte, then the client's byte stream.

#include "protocol/startup_phase.hpp"
#include "proxy/byte_buffer.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <algorithm>
#include <cstring>
#include <string>

using namespace pglane::protocol;

namespace {

// The config's default and smallest limit (limits.max_startup_packet_bytes).
constexpr std::uint32_t max_packet_length = 10'000;
// A session's receive buffer starts at the relay size; only startup packets grow it.
constexpr std::size_t initial_capacity = 16 * 1024;

void check_decision(const StartupStep& step, Bytes unread) {
    FUZZ_CHECK(step.bytes <= unread.size());
    switch (step.action) {
        case StartupAction::need_more:
            FUZZ_CHECK(step.bytes == 0);
            FUZZ_CHECK(step.frame_size <= max_packet_length);
            break;
        case StartupAction::refuse:
            FUZZ_CHECK(step.sqlstate == sqlstate::protocol_violation || step.sqlstate == sqlstate::feature_not_supported);
            FUZZ_CHECK(!step.message.empty() && !step.reason.empty());
            break;
        case StartupAction::encryption_request:
            FUZZ_CHECK(step.bytes == 8);
            FUZZ_CHECK(step.packet.kind == StartupKind::ssl_request || step.packet.kind == StartupKind::gssenc_request);
            break;
        case StartupAction::forward_cancel:
            FUZZ_CHECK(step.bytes == 16 && step.packet.kind == StartupKind::cancel_request);
            break;
        case StartupAction::start_session: {
            FUZZ_CHECK(step.packet.kind == StartupKind::startup);
            FUZZ_CHECK(!step.packet.parameter("user").empty());
            FUZZ_CHECK((step.packet.version >> 16) == 3);
            if (step.packet.version == protocol_version_3_0) {
                std::string again;
                append_startup_message(again, step.packet.parameters);
                FUZZ_CHECK(again == as_text(unread.first(step.bytes)));
            }
            break;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    pglane::fuzz::Input input(data, size);
    std::uint32_t piece_seed = input.byte() | 1u;
    const Bytes stream = input.rest();

    pglane::proxy::ByteBuffer in(initial_capacity);
    StartupPhase phase(max_packet_length);
    std::size_t fed = 0;
    int declined = 0;
    // Every round takes at least one byte in or consumes a packet: the loop is bounded.
    for (std::size_t rounds = 0; rounds <= stream.size() + 4; ++rounds) {
        StartupStep step = phase.next(in.unread());
        check_decision(step, in.unread());
        if (step.action == StartupAction::need_more) {
            if (fed == stream.size()) return 0;   // the client went quiet: the startup timeout's job
            if (step.frame_size != 0) in.reserve_frame(step.frame_size);
            else in.compact();
            FUZZ_CHECK(in.capacity() <= std::max<std::size_t>(initial_capacity, max_packet_length));
            auto space = in.free_space();
            FUZZ_CHECK(!space.empty());
            piece_seed = piece_seed * 1103515245u + 12345u;
            std::size_t piece = std::min({space.size(), stream.size() - fed, std::size_t{1} + (piece_seed >> 16) % 512});
            std::memcpy(space.data(), stream.data() + fed, piece);
            in.commit(piece);
            fed += piece;
            continue;
        }
        in.consume(step.bytes);
        if (step.action != StartupAction::encryption_request) return 0;
        FUZZ_CHECK(++declined <= 2);
    }
    FUZZ_CHECK(false && "the startup phase did not end");
    return 0;
}
