#pragma once
// What the fuzz targets share: an invariant check that stops the run with the failing
// condition named (libFuzzer then saves the input as crash-*), and a byte-stream reader that
// splits one fuzz input into control values and payload.

#include "protocol/bytes.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #condition); \
            std::abort();                                                                          \
        }                                                                                          \
    } while (false)

namespace pglane::fuzz {

/// Takes control bytes from the front of the input; what is left is the payload.
class Input {
public:
    Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    [[nodiscard]] std::uint8_t byte() {
        if (size_ == 0) return 0;
        --size_;
        return *data_++;
    }
    [[nodiscard]] protocol::Bytes rest() const { return {reinterpret_cast<const std::byte*>(data_), size_}; }
    [[nodiscard]] std::string_view rest_text() const { return {reinterpret_cast<const char*>(data_), size_}; }

private:
    const std::uint8_t* data_;
    std::size_t size_;
};

/// True when `inner` lies inside `outer` (decoders return views into their input).
[[nodiscard]] inline bool within(std::string_view inner, std::string_view outer) {
    if (inner.empty()) return true;
    return inner.data() >= outer.data() && inner.data() + inner.size() <= outer.data() + outer.size();
}

}  // namespace pglane::fuzz
