#pragma once
// Big-endian integer access over byte spans: the wire format of every protocol message.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace pglane::protocol {

using Bytes = std::span<const std::byte>;

[[nodiscard]] inline Bytes as_bytes(std::string_view text) {
    return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

[[nodiscard]] inline std::string_view as_text(Bytes bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

[[nodiscard]] inline std::uint32_t load_u32(const std::byte* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
           std::uint32_t(p[3]);
}

[[nodiscard]] inline std::uint16_t load_u16(const std::byte* p) {
    return static_cast<std::uint16_t>((std::uint16_t(p[0]) << 8) | std::uint16_t(p[1]));
}

/// Reads fields from one message body front to back. A read past the end, or a string
/// without its terminating NUL, sets `failed()` instead of throwing: malformed input is
/// expected life for a proxy, so callers check once at the end.
class BodyReader {
public:
    explicit BodyReader(Bytes body) : rest_(body) {}

    [[nodiscard]] std::uint8_t u8() {
        if (!need(1)) return 0;
        auto v = std::uint8_t(rest_[0]);
        rest_ = rest_.subspan(1);
        return v;
    }
    [[nodiscard]] std::uint16_t u16() {
        if (!need(2)) return 0;
        auto v = load_u16(rest_.data());
        rest_ = rest_.subspan(2);
        return v;
    }
    [[nodiscard]] std::uint32_t u32() {
        if (!need(4)) return 0;
        auto v = load_u32(rest_.data());
        rest_ = rest_.subspan(4);
        return v;
    }
    [[nodiscard]] std::int32_t i32() { return static_cast<std::int32_t>(u32()); }
    [[nodiscard]] std::int16_t i16() { return static_cast<std::int16_t>(u16()); }

    /// A NUL-terminated string; the view points into the body.
    [[nodiscard]] std::string_view cstring() {
        auto text = as_text(rest_);
        auto end = text.find('\0');
        if (end == std::string_view::npos) {
            failed_ = true;
            rest_ = {};
            return {};
        }
        rest_ = rest_.subspan(end + 1);
        return text.substr(0, end);
    }
    [[nodiscard]] Bytes bytes(std::size_t n) {
        if (!need(n)) return {};
        auto v = rest_.first(n);
        rest_ = rest_.subspan(n);
        return v;
    }
    [[nodiscard]] Bytes remaining() const { return rest_; }
    [[nodiscard]] bool at_end() const { return rest_.empty(); }
    [[nodiscard]] bool failed() const { return failed_; }

private:
    bool need(std::size_t n) {
        if (failed_ || rest_.size() < n) {
            failed_ = true;
            rest_ = {};
            return false;
        }
        return true;
    }

    Bytes rest_;
    bool failed_ = false;
};

}  // namespace pglane::protocol
