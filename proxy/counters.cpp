#include "proxy/counters.hpp"

namespace pglane::proxy {

Counters::Counters(std::size_t node_count) : node_count_(node_count), nodes_(new NodeRow[node_count]) {
    for (auto& row : listener_)
        for (auto& v : row) v.store(0, std::memory_order_relaxed);
    for (std::size_t n = 0; n < node_count_; ++n)
        for (auto& v : nodes_[n]) v.store(0, std::memory_order_relaxed);
    for (auto& v : route_reasons_) v.store(0, std::memory_order_relaxed);
}

void Counters::sum_into(CounterTotals& totals) const {
    for (std::size_t k = 0; k < listener_kind_count; ++k)
        for (std::size_t c = 0; c < listener_counter_count; ++c)
            totals.listener[k][c] += listener_[k][c].load(std::memory_order_relaxed);
    if (totals.node.size() < node_count_) totals.node.resize(node_count_);
    for (std::size_t n = 0; n < node_count_; ++n)
        for (std::size_t c = 0; c < node_counter_count; ++c)
            totals.node[n][c] += nodes_[n][c].load(std::memory_order_relaxed);
    for (std::size_t r = 0; r < route_reason_count; ++r)
        totals.route_reasons[r] += route_reasons_[r].load(std::memory_order_relaxed);
}

}  // namespace pglane::proxy
