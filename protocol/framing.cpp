#include "protocol/framing.hpp"

#include <algorithm>

namespace pglane::protocol {

Frame frame_message(Bytes buffer, std::uint32_t max_length) {
    Frame frame;
    if (buffer.size() < 5) return frame;
    frame.tag = static_cast<char>(buffer[0]);
    std::uint32_t length = load_u32(buffer.data() + 1);
    if (length < 4 || length > max_length) {
        frame.status = FrameStatus::malformed;
        frame.length = length;
        return frame;
    }
    frame.length = length;
    frame.size = std::size_t{length} + 1;
    if (buffer.size() < frame.size) return frame;
    frame.status = FrameStatus::message;
    frame.body = buffer.subspan(5, length - 4);
    return frame;
}

Frame frame_startup(Bytes buffer, std::uint32_t max_length) {
    Frame frame;
    if (buffer.size() < 4) return frame;
    std::uint32_t length = load_u32(buffer.data());
    // Every startup-phase packet carries at least a 4-byte code after the length.
    if (length < 8 || length > max_length) {
        frame.status = FrameStatus::malformed;
        frame.length = length;
        return frame;
    }
    frame.length = length;
    frame.size = length;
    if (buffer.size() < frame.size) return frame;
    frame.status = FrameStatus::message;
    frame.body = buffer.subspan(4, length - 4);
    return frame;
}

namespace {

/// Calls `each(tag)` for every message of `bytes`; false when they do not end at a boundary.
template <typename Each>
bool whole_messages(Bytes bytes, Each each) {
    while (!bytes.empty()) {
        Frame frame = frame_message(bytes, UINT32_MAX);
        if (frame.status != FrameStatus::message) return false;
        each(frame.tag);
        bytes = bytes.subspan(frame.size);
    }
    return true;
}

}  // namespace

bool ends_at_query_or_sync(Bytes bytes) {
    // A Query ends with its string's NUL, a Sync with its length 4: anything else is
    // rejected without a walk (a COPY's data, a Parse or Bind still waiting for its Sync).
    if (bytes.size() < 5 || (bytes.back() != std::byte{0} && bytes.back() != std::byte{4})) return false;
    char last = 0;
    return whole_messages(bytes, [&](char tag) { last = tag; }) && (last == 'Q' || last == 'S');
}

std::size_t ready_for_query_count_at_end(Bytes bytes) {
    // The last six bytes must be a ReadyForQuery ('Z', length 5, status) before the walk.
    if (bytes.size() < 6) return 0;
    Bytes tail = bytes.last(6);
    if (tail[0] != std::byte{'Z'} || load_u32(tail.data() + 1) != 5) return 0;
    std::size_t count = 0;
    char last = 0;
    bool whole = whole_messages(bytes, [&](char tag) {
        last = tag;
        if (tag == 'Z') ++count;
    });
    return whole && last == 'Z' ? count : 0;
}

RelayCursor::Step RelayCursor::next(Bytes unread) {
    Step step;
    if (passthrough_left_ != 0) {
        std::size_t take = std::min(passthrough_left_, unread.size());
        if (take == 0) return step;
        passthrough_left_ -= take;
        step.kind = Kind::passthrough;
        step.bytes = take;
        return step;
    }
    step.frame = frame_message(unread, max_length_);
    switch (step.frame.status) {
        case FrameStatus::message:
            step.kind = Kind::message;
            step.bytes = step.frame.size;
            return step;
        case FrameStatus::malformed:
            step.kind = Kind::malformed;
            return step;
        case FrameStatus::need_more:
            break;
    }
    // A message that cannot fit the buffer streams through in pieces, starting now.
    if (step.frame.header_known() && step.frame.size > capacity_) {
        step.kind = Kind::passthrough;
        step.bytes = unread.size();
        passthrough_left_ = step.frame.size - unread.size();
    }
    return step;
}

}  // namespace pglane::protocol
