// Fuzz target: framing of tagged and startup-phase messages, and RelayCursor walking a stream
// that arrives in arbitrary pieces through a fixed-capacity buffer, the way a session's relay
// loop does. The cursor must see exactly the messages a whole-buffer walk sees, never stall
// with a full buffer, and stop at the same malformed header.
//
// Input: capacity byte, max-length byte, piece-size seed byte, then the byte stream.

#include "protocol/framing.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

using namespace pglane::protocol;

namespace {

void check_frame(const Frame& frame, Bytes buffer, std::uint32_t max_length, std::size_t header, std::uint32_t min_length) {
    switch (frame.status) {
        case FrameStatus::message:
            FUZZ_CHECK(frame.length >= min_length && frame.length <= max_length);
            FUZZ_CHECK(frame.size == frame.length + header - 4);
            FUZZ_CHECK(frame.size <= buffer.size());
            FUZZ_CHECK(frame.body.size() == frame.length - 4);
            FUZZ_CHECK(frame.body.data() == buffer.data() + header);
            break;
        case FrameStatus::malformed:
            FUZZ_CHECK(buffer.size() >= header);
            FUZZ_CHECK(frame.length < min_length || frame.length > max_length);
            break;
        case FrameStatus::need_more:
            FUZZ_CHECK(buffer.size() < header || frame.size > buffer.size());
            if (buffer.size() >= header) FUZZ_CHECK(frame.header_known());
            break;
    }
}

/// One message as a consumer of the stream sees it.
struct Seen {
    char tag;
    std::size_t size;
    bool operator==(const Seen&) const = default;
};

/// The whole-buffer walk: every complete message, then how the stream ends.
struct Reference {
    std::vector<Seen> messages;
    std::size_t complete_bytes = 0;
    bool malformed = false;
    std::optional<Frame> pending;   // need_more with a known header
};

Reference walk_whole(Bytes stream, std::uint32_t max_length) {
    Reference ref;
    Bytes rest = stream;
    for (;;) {
        Frame frame = frame_message(rest, max_length);
        check_frame(frame, rest, max_length, 5, 4);
        if (frame.status == FrameStatus::malformed) {
            ref.malformed = true;
            return ref;
        }
        if (frame.status == FrameStatus::need_more) {
            if (frame.header_known()) ref.pending = frame;
            return ref;
        }
        ref.messages.push_back({frame.tag, frame.size});
        ref.complete_bytes += frame.size;
        rest = rest.subspan(frame.size);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    pglane::fuzz::Input input(data, size);
    const std::size_t capacity = 8 + input.byte();
    const std::uint8_t max_byte = input.byte();
    const std::uint32_t max_length = max_byte < 128 ? 4 + std::uint32_t{max_byte} * 8 : (1u << 30) - 1;
    std::uint32_t piece_seed = input.byte() | 1u;
    const Bytes stream = input.rest();

    check_frame(frame_startup(stream, max_length), stream, max_length, 4, 8);
    const Reference ref = walk_whole(stream, max_length);

    // The relay loop: read a piece into free space, step until need_more, compact.
    std::vector<std::byte> buffer(capacity);
    std::size_t begin = 0, end = 0, fed = 0, consumed = 0;
    RelayCursor cursor(max_length, capacity);
    std::vector<Seen> seen;
    std::size_t streaming_left = 0;   // bytes of the passthrough message not yet seen
    bool malformed = false;
    for (int rounds = 0; rounds < 1'000'000; ++rounds) {
        Bytes unread{buffer.data() + begin, end - begin};
        RelayCursor::Step step = cursor.next(unread);
        if (step.kind == RelayCursor::Kind::malformed) {
            FUZZ_CHECK(streaming_left == 0);
            malformed = true;
            break;
        }
        if (step.kind == RelayCursor::Kind::need_more) {
            FUZZ_CHECK(step.bytes == 0);
            if (fed == stream.size()) break;
            std::memmove(buffer.data(), buffer.data() + begin, end - begin);
            end -= begin;
            begin = 0;
            // A cursor that needs more while the buffer is full would stall the session forever.
            FUZZ_CHECK(end < capacity);
            piece_seed = piece_seed * 1103515245u + 12345u;
            std::size_t piece = std::min({capacity - end, stream.size() - fed, std::size_t{1} + (piece_seed >> 16) % 64});
            std::memcpy(buffer.data() + end, stream.data() + fed, piece);
            end += piece;
            fed += piece;
            continue;
        }
        FUZZ_CHECK(step.bytes > 0 && step.bytes <= unread.size());
        if (step.kind == RelayCursor::Kind::message) {
            FUZZ_CHECK(streaming_left == 0);
            FUZZ_CHECK(step.bytes == step.frame.size && step.frame.size <= capacity);
            FUZZ_CHECK(std::memcmp(step.frame.body.data(), stream.data() + consumed + 5, step.frame.body.size()) == 0);
            seen.push_back({step.frame.tag, step.frame.size});
        } else if (streaming_left == 0) {
            // The first piece of a big message carries its header.
            FUZZ_CHECK(step.frame.header_known() && step.frame.size > capacity);
            FUZZ_CHECK(step.bytes < step.frame.size);
            seen.push_back({step.frame.tag, step.frame.size});
            streaming_left = step.frame.size - step.bytes;
            FUZZ_CHECK(cursor.in_passthrough());
        } else {
            FUZZ_CHECK(step.bytes <= streaming_left);
            streaming_left -= step.bytes;
            FUZZ_CHECK(cursor.in_passthrough() == (streaming_left != 0));
        }
        begin += step.bytes;
        consumed += step.bytes;
    }
    FUZZ_CHECK(consumed <= stream.size());

    // Same messages as the whole-buffer walk; a streamed message may be cut by the end of input.
    std::vector<Seen> complete(seen.begin(), seen.end() - (streaming_left != 0 ? 1 : 0));
    FUZZ_CHECK(complete == ref.messages);
    FUZZ_CHECK(malformed == ref.malformed);
    if (streaming_left != 0) {
        FUZZ_CHECK(ref.pending && ref.pending->size > capacity);
        FUZZ_CHECK(consumed == stream.size());
    } else if (!malformed) {
        FUZZ_CHECK(consumed == ref.complete_bytes);
    } else {
        FUZZ_CHECK(consumed == ref.complete_bytes);
    }
    return 0;
}
