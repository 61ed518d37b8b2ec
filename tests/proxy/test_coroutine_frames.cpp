// common/coroutine_frames: awaitable frames of every size come back from the thread's shelf,
// the shelf is bounded, and stricter alignments are honoured. The first case runs real Asio
// coroutines, so it also shows that this translation unit allocates through the
// specialisation (the precompiled header brings it).

#include "common/coroutine_frames.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace frames = pglane::coroutine_frames;
using asio::detail::thread_info_base;

namespace {

// Frames of about 1.5 KiB and 300 bytes: the mix that Asio's own recycling (blocks up to
// 1020 bytes, first fit, a miss evicts one) sent to malloc every time.
asio::awaitable<int> small_frame(int x) {
    volatile char pad[300];
    pad[static_cast<std::size_t>(x) % sizeof pad] = static_cast<char>(x);
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    co_return pad[static_cast<std::size_t>(x) % sizeof pad];
}

asio::awaitable<int> big_frame(int x) {
    volatile char pad[1500];
    pad[static_cast<std::size_t>(x) % sizeof pad] = static_cast<char>(x);
    int small = co_await small_frame(x);
    co_return small + pad[static_cast<std::size_t>(x) % sizeof pad];
}

void* allocate(std::size_t size, std::size_t align = BOOST_ASIO_DEFAULT_ALIGN) {
    return thread_info_base::allocate(thread_info_base::awaitable_frame_tag(), nullptr, size, align);
}

void deallocate(void* pointer, std::size_t size) {
    thread_info_base::deallocate(thread_info_base::awaitable_frame_tag(), nullptr, pointer, size);
}

}  // namespace

TEST_CASE("nested coroutines of big and small frames take kept blocks, not new ones") {
    asio::io_context io(1);
    long sum = 0;
    constexpr int rounds = 2000;
    const frames::ThreadCounts before = frames::this_thread_counts();
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (int i = 0; i < rounds; ++i) sum += co_await big_frame(i);
        },
        asio::detached);
    io.run();
    const frames::ThreadCounts after = frames::this_thread_counts();
    CHECK(sum != 0);
    // Each round creates the two frames plus the one of post's initiation.
    CHECK(after.reused - before.reused >= 3 * (rounds - 1));
    CHECK(after.from_heap - before.from_heap <= 8);
}

TEST_CASE("a freed frame is kept in its size class and given to the next frame of that class") {
    void* first = allocate(1000);
    deallocate(first, 1000);
    // 1000 and 1005 bytes share the 1008-byte class: the same block comes back.
    void* second = allocate(1005);
    CHECK(second == first);
    deallocate(second, 1005);
    // 1010 bytes is the next class: a different block.
    void* third = allocate(1010);
    CHECK(third != first);
    deallocate(third, 1010);
}

TEST_CASE("the shelf keeps at most kept_per_class blocks of a class and nothing above largest_kept") {
    const frames::ThreadCounts start = frames::this_thread_counts();
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < frames::kept_per_class + 8; ++i) blocks.push_back(allocate(2000));
    for (void* block : blocks) deallocate(block, 2000);
    const frames::ThreadCounts kept = frames::this_thread_counts();
    CHECK(kept.kept_blocks - start.kept_blocks <= frames::kept_per_class);
    CHECK(kept.kept_bytes <= frames::max_kept_bytes);

    void* huge = allocate(frames::largest_kept + 1);
    deallocate(huge, frames::largest_kept + 1);
    CHECK(frames::this_thread_counts().kept_blocks == kept.kept_blocks);

    // Taking them all back empties the class again.
    blocks.clear();
    for (std::size_t i = 0; i < frames::kept_per_class + 8; ++i) blocks.push_back(allocate(2000));
    CHECK(frames::this_thread_counts().kept_blocks == start.kept_blocks);
    for (void* block : blocks) deallocate(block, 2000);
}

TEST_CASE("a stricter alignment than the default gets a block with that alignment") {
    void* kept = allocate(700);
    deallocate(kept, 700);
    void* aligned = allocate(700, 256);
    CHECK(reinterpret_cast<std::uintptr_t>(aligned) % 256 == 0);
    deallocate(aligned, 700);
    void* again = allocate(700);
    deallocate(again, 700);
}

TEST_CASE("a frame freed by another thread is kept there and freed when that thread ends") {
    void* block = allocate(500);
    frames::ThreadCounts other{};
    std::thread([&] {
        deallocate(block, 500);
        other = frames::this_thread_counts();
    }).join();
    CHECK(other.kept_blocks == 1);
    CHECK(other.kept_bytes == 512);
    // LeakSanitizer (scripts/test sanitize) reports the block if the ending thread kept it.
}
