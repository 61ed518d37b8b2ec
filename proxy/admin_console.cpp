#include "proxy/admin_console.hpp"

#include <algorithm>

namespace pglane::proxy {

void AdminConsole::add_worker(asio::any_io_executor executor, Describe describe, std::function<void()> wake) {
    workers_.push_back({std::move(executor), std::move(describe), std::move(wake)});
}

void AdminConsole::resume() {
    paused.store(false);
    for (const WorkerView& worker : workers_) asio::post(worker.executor, worker.wake);
}

bool AdminConsole::is_admin(std::string_view user) const {
    return std::find(users_.begin(), users_.end(), user) != users_.end();
}

asio::awaitable<AdminConsole::Snapshot> AdminConsole::snapshot() const {
    Snapshot out;
    for (const WorkerView& worker : workers_) {
        // One worker at a time: while its thread fills `out`, this coroutine is suspended,
        // and the hand-over through the io_context orders the writes before the next read.
        auto describe = [&]() -> asio::awaitable<void> {
            worker.describe(out.clients, out.servers);
            co_return;
        };
        co_await asio::co_spawn(worker.executor, describe, asio::use_awaitable);
    }
    std::sort(out.clients.begin(), out.clients.end(),
              [](const admin::ClientInfo& a, const admin::ClientInfo& b) {
                  return std::tie(a.worker, a.session) < std::tie(b.worker, b.session);
              });
    co_return out;
}

}  // namespace pglane::proxy
