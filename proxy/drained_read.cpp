// What the reactor knows about a socket a drained read emptied (proxy/drained_read.hpp).

#include "proxy/drained_read.hpp"

namespace pglane::proxy {

namespace drained_read_detail {
namespace {

// Whether a socket's next read starts with a speculative recv is the reactor's private
// per-descriptor flag. An explicit instantiation may name a private member ([temp.spec]:
// access is not checked there), and this one hands the pointer to it out through a friend
// function. It is instantiated here only: one definition in the program.
using SpeculativeFlags = bool (DescriptorState::*)[ad::epoll_reactor::max_ops];
SpeculativeFlags try_speculative_member();
template <SpeculativeFlags Member>
struct ExposeFlags {
    friend SpeculativeFlags try_speculative_member() { return Member; }
};

}  // namespace

template struct ExposeFlags<&DescriptorState::try_speculative_>;

bool next_read_tries_first(DescriptorState* state) {
    return state == nullptr || (state->*try_speculative_member())[ad::reactor::read_op];
}

bool quiet_since_drained(DescriptorState* state) {
    if (state == nullptr || (state->*try_speculative_member())[ad::reactor::read_op]) return false;
    // An edge the last poll collected sets the flag only when the scheduler runs the
    // descriptor's state, which waits in its queue meanwhile. The scheduler puts its reactor
    // marker behind whatever a poll collected, so a queued state always has a successor;
    // the state's queue link is that of its (private) operation base, which a C-style cast
    // may reach.
    auto* as_operation = (ad::operation*)state;
    return ad::op_queue_access::next(as_operation) == nullptr;
}

}  // namespace drained_read_detail

}  // namespace pglane::proxy
