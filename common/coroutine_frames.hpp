#pragma once
// Where coroutine frames come from: Asio's per-thread recycling, made to fit pglane's frames.
//
// Asio allocates every awaitable frame through thread_info_base::allocate(awaitable_frame_tag),
// which keeps up to BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE freed blocks per thread, but only
// blocks of at most 1020 bytes (255 chunks of 4 bytes when Asio is built without io_uring), first
// fit, and a request that no kept block fits evicts one. A unit on the auto port nests frames of
// 1.2 to 1.6 KB (run_unit, choose_server, execute) among small ones, so each big frame evicted a
// small one and every frame of every unit went to malloc: 8 per transaction (issue 5, "no
// allocation per message on the hot path"). The specialisations below keep freed frames per
// thread in size classes instead; the rest of Asio's recycling is unchanged.
//
// The classes are 16 bytes apart, as glibc's chunks are: an idle session keeps its frames for
// as long as it is idle, and 10,000 idle sessions must stay under 100 MiB (issue 5).
//
// An explicit specialisation must be seen by every translation unit that creates a frame, or
// frames would be allocated one way and freed the other. The precompiled headers of
// pglane_health, pglane_proxy and the unit tests include this header (CMakeLists.txt); proxy/
// main.cpp creates no coroutine. The static_assert pins the Boost version whose signatures these
// are: check them again on an upgrade.

#include <boost/asio/detail/thread_info_base.hpp>
#include <boost/version.hpp>

#include <cstddef>
#include <cstdint>

static_assert(BOOST_VERSION / 100 == 1081,
              "common/coroutine_frames.hpp specialises Boost 1.81's thread_info_base::allocate: check it");

namespace boost::asio::detail {

template <>
void* thread_info_base::allocate(thread_info_base::awaitable_frame_tag, thread_info_base* this_thread,
                                 std::size_t size, std::size_t align);

template <>
void thread_info_base::deallocate(thread_info_base::awaitable_frame_tag, thread_info_base* this_thread,
                                  void* pointer, std::size_t size);

}  // namespace boost::asio::detail

namespace pglane::coroutine_frames {

/// Frames up to `largest_kept` bytes are rounded up to a multiple of `granule` and kept per
/// thread when freed: at most `kept_per_class` of each size and `max_kept_bytes` in all.
inline constexpr std::size_t granule = 16;
inline constexpr std::size_t largest_kept = 4096;
inline constexpr std::size_t kept_per_class = 16;
inline constexpr std::size_t max_kept_bytes = 256 * 1024;

/// The calling thread's counts since it started.
struct ThreadCounts {
    std::uint64_t from_heap = 0;  // frames that needed a new block
    std::uint64_t reused = 0;     // frames given a kept block
    std::size_t kept_blocks = 0;  // blocks kept now
    std::size_t kept_bytes = 0;
};

[[nodiscard]] ThreadCounts this_thread_counts();

}  // namespace pglane::coroutine_frames
