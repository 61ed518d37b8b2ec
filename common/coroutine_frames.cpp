#include "common/coroutine_frames.hpp"

#include <boost/asio/detail/memory.hpp>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define PGLANE_POISON(pointer, bytes) ASAN_POISON_MEMORY_REGION(pointer, bytes)
#define PGLANE_UNPOISON(pointer, bytes) ASAN_UNPOISON_MEMORY_REGION(pointer, bytes)
#else
#define PGLANE_POISON(pointer, bytes) ((void)(pointer), (void)(bytes))
#define PGLANE_UNPOISON(pointer, bytes) ((void)(pointer), (void)(bytes))
#endif

namespace pglane::coroutine_frames {

namespace {

constexpr std::size_t class_count = largest_kept / granule;

[[nodiscard]] constexpr std::size_t size_class(std::size_t size) { return size == 0 ? 0 : (size - 1) / granule; }
[[nodiscard]] constexpr std::size_t class_bytes(std::size_t size_class) { return (size_class + 1) * granule; }

// A kept frame's first bytes link it to the next kept frame of its class.
struct Kept {
    Kept* next;
};

// One thread's kept frames. Trivially destructible, so a frame freed while the thread exits
// (after Closer ran) still finds it, closed, and goes back to the heap.
struct Shelf {
    Kept* heads[class_count];
    std::uint8_t counts[class_count];
    ThreadCounts counts_total;
    bool closed;
    const void* closer;  // set once Closer is constructed
};

constinit thread_local Shelf shelf{};

Kept* pop(std::size_t c) {
    Kept* block = shelf.heads[c];
    PGLANE_UNPOISON(block, sizeof(Kept));
    shelf.heads[c] = block->next;
    --shelf.counts[c];
    shelf.counts_total.kept_bytes -= class_bytes(c);
    return block;
}

struct Closer {
    ~Closer() {
        for (std::size_t c = 0; c < class_count; ++c) {
            while (shelf.counts[c] > 0) {
                Kept* block = pop(c);
                PGLANE_UNPOISON(block, class_bytes(c));
                boost::asio::aligned_delete(block);
            }
        }
        shelf.closed = true;
    }
};

thread_local Closer closer;

void* allocate(std::size_t size, std::size_t align) {
    if (size > largest_kept) {
        ++shelf.counts_total.from_heap;
        return boost::asio::aligned_new(align, size);
    }
    const std::size_t c = size_class(size);
    // Kept blocks have the default alignment; a stricter request gets a new one, of the
    // class's size all the same, so that any block of a class can be kept when freed.
    if (align <= BOOST_ASIO_DEFAULT_ALIGN && shelf.counts[c] > 0) {
        Kept* block = pop(c);
        ++shelf.counts_total.reused;
        PGLANE_UNPOISON(block, size);  // the rest of the block stays poisoned: an overrun shows
        return block;
    }
    ++shelf.counts_total.from_heap;
    void* block = boost::asio::aligned_new(align, class_bytes(c));
    PGLANE_POISON(static_cast<std::byte*>(block) + size, class_bytes(c) - size);
    return block;
}

void deallocate(void* pointer, std::size_t size) {
    if (size <= largest_kept && !shelf.closed) {
        const std::size_t c = size_class(size);
        if (shelf.counts[c] < kept_per_class && shelf.counts_total.kept_bytes + class_bytes(c) <= max_kept_bytes) {
            // The first use of `closer` constructs it: its destructor empties the shelf when
            // the thread ends.
            if (shelf.closer == nullptr) shelf.closer = &closer;
            PGLANE_UNPOISON(pointer, sizeof(Kept));
            Kept* block = static_cast<Kept*>(pointer);
            block->next = shelf.heads[c];
            shelf.heads[c] = block;
            ++shelf.counts[c];
            shelf.counts_total.kept_bytes += class_bytes(c);
            PGLANE_POISON(pointer, class_bytes(c));
            return;
        }
    }
    PGLANE_UNPOISON(pointer, size <= largest_kept ? class_bytes(size_class(size)) : size);
    boost::asio::aligned_delete(pointer);
}

}  // namespace

ThreadCounts this_thread_counts() {
    ThreadCounts counts = shelf.counts_total;
    for (std::uint8_t kept : shelf.counts) counts.kept_blocks += kept;
    return counts;
}

}  // namespace pglane::coroutine_frames

namespace boost::asio::detail {

template <>
void* thread_info_base::allocate(thread_info_base::awaitable_frame_tag, thread_info_base*, std::size_t size,
                                 std::size_t align) {
    return pglane::coroutine_frames::allocate(size, align);
}

template <>
void thread_info_base::deallocate(thread_info_base::awaitable_frame_tag, thread_info_base*, void* pointer,
                                  std::size_t size) {
    pglane::coroutine_frames::deallocate(pointer, size);
}

}  // namespace boost::asio::detail
