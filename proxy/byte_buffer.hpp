#pragma once
// A receive buffer: bytes arrive at the end, are consumed from the front, and the unread
// tail moves to the front before the next read. Reused for the session's whole life.

#include "protocol/bytes.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>

namespace pglane::proxy {

/// Owned by one session direction; touched by the session's worker thread only.
class ByteBuffer {
public:
    explicit ByteBuffer(std::size_t capacity) : storage_(new std::byte[capacity]), capacity_(capacity) {}

    [[nodiscard]] protocol::Bytes unread() const { return {storage_.get() + begin_, end_ - begin_}; }
    /// The unread bytes and the `received` ones after them that a read put into free_space()
    /// and nobody has committed yet.
    [[nodiscard]] protocol::Bytes unread_with(std::size_t received) const {
        return {storage_.get() + begin_, end_ - begin_ + received};
    }
    [[nodiscard]] std::span<std::byte> free_space() { return {storage_.get() + end_, capacity_ - end_}; }
    [[nodiscard]] const std::byte* data_at(std::size_t offset) const { return storage_.get() + offset; }
    [[nodiscard]] std::size_t begin() const { return begin_; }
    [[nodiscard]] std::size_t capacity() const { return capacity_; }
    [[nodiscard]] bool empty() const { return begin_ == end_; }

    void consume(std::size_t n) { begin_ += n; }
    void commit(std::size_t n) { end_ += n; }

    /// Moves unread bytes to the front so the whole free space is available.
    void compact() {
        if (begin_ == 0) return;
        std::size_t n = end_ - begin_;
        if (n != 0) std::memmove(storage_.get(), storage_.get() + begin_, n);
        begin_ = 0;
        end_ = n;
    }

    /// Makes room for a frame of `size` bytes (startup-phase messages only, bounded by the
    /// caller's maximum); relayed messages never grow the buffer, they stream through.
    void reserve_frame(std::size_t size) {
        compact();
        if (size <= capacity_) return;
        std::unique_ptr<std::byte[]> bigger(new std::byte[size]);
        std::memcpy(bigger.get(), storage_.get(), end_);
        storage_ = std::move(bigger);
        capacity_ = size;
    }

    /// Gives back a buffer grown past `limit` (one large message held whole) once what is
    /// left unread fits in `limit` again: an idle session does not keep its largest message.
    void shrink_to(std::size_t limit) {
        if (capacity_ <= limit || end_ - begin_ > limit) return;
        compact();
        std::unique_ptr<std::byte[]> smaller(new std::byte[limit]);
        std::memcpy(smaller.get(), storage_.get(), end_);
        storage_ = std::move(smaller);
        capacity_ = limit;
    }

    /// Doubles the buffer, up to `limit`, when the last read filled it: an idle client costs
    /// a small buffer, a busy one gets a larger one.
    void grow_when_full(std::size_t limit) {
        if (end_ != capacity_ || capacity_ >= limit) return;
        std::size_t unread = end_ - begin_;
        reserve_frame(std::max(unread, std::min(capacity_ * 2, limit)));
    }

private:
    std::unique_ptr<std::byte[]> storage_;
    std::size_t capacity_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

}  // namespace pglane::proxy
