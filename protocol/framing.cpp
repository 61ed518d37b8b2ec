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
