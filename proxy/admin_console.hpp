#pragma once
// What the admin console (admin_commands.hpp) reads and changes across the whole process:
// the /status document, every worker's sessions and server connections (each worker
// describes its own on its own thread), and the PAUSE switch sessions wait on.

#include "proxy/admin_commands.hpp"

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

namespace pglane::proxy {

namespace asio = boost::asio;

class AdminConsole {
public:
    using Describe = std::function<void(std::vector<admin::ClientInfo>&, std::vector<admin::ServerInfo>&)>;

    /// `reload`: ConfigReloader::reload (empty when applied, else why not).
    AdminConsole(std::vector<std::string> users, std::function<nlohmann::json()> status,
                 std::function<std::string()> reload)
        : users_(std::move(users)), status_(std::move(status)), reload_(std::move(reload)) {}

    /// Before any session starts: `describe` and `wake` (which wakes the worker's sessions
    /// waiting for RESUME) run on `executor`'s thread.
    void add_worker(asio::any_io_executor executor, Describe describe, std::function<void()> wake);

    [[nodiscard]] bool is_admin(std::string_view user) const;
    [[nodiscard]] nlohmann::json status() const { return status_(); }
    [[nodiscard]] std::string reload() const { return reload_(); }

    struct Snapshot {
        std::vector<admin::ClientInfo> clients;
        std::vector<admin::ServerInfo> servers;
    };
    /// Every worker's sessions and connections, each taken on its worker's thread.
    asio::awaitable<Snapshot> snapshot() const;

    /// PAUSE: sessions outside a transaction wait before their next one until resume().
    std::atomic<bool> paused{false};
    void resume();

private:
    struct WorkerView {
        asio::any_io_executor executor;
        Describe describe;
        std::function<void()> wake;
    };
    std::vector<std::string> users_;
    std::function<nlohmann::json()> status_;
    std::function<std::string()> reload_;
    std::vector<WorkerView> workers_;
};

}  // namespace pglane::proxy
