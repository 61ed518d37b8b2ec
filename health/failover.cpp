// The failover manager's pure half: the promotion decision, the outage tracker, and the
// text of the settings it writes on the nodes.

#include "health/failover.hpp"

#include "common/log.hpp"

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <tuple>

namespace pglane::health {
namespace {

[[nodiscard]] bool same_host(std::string_view a, std::string_view b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
    });
}

[[nodiscard]] bool is_at(const NodeStatus& node, std::string_view upstream) {
    const auto colon = upstream.rfind(':');
    if (colon == std::string_view::npos) return false;
    return same_host(node.address.host, upstream.substr(0, colon)) &&
           upstream.substr(colon + 1) == std::to_string(node.address.port);
}

[[nodiscard]] bool is_standby(const NodeStatus& node) {
    return node.up && node.role == Role::standby;
}

[[nodiscard]] bool was_synchronous(const NodeStatus& node) {
    return node.sync_state == "sync" || node.sync_state == "quorum";
}

[[nodiscard]] std::uint64_t wal_position(const NodeStatus& node) {
    return std::max(node.receive_lsn, node.replay_lsn);
}

// Why a standby's WAL receiver says the old primary (or something pglane cannot rule out
// being it) is alive; empty when it does not.
[[nodiscard]] std::string live_upstream(const Topology& topology, std::size_t index,
                                        std::optional<std::size_t> last_primary) {
    const NodeStatus& standby = topology.nodes[index];
    if (standby.wal_receiver == "unknown") {
        return fmt::format("cannot see the WAL receiver of {} (the health user needs pg_read_all_stats)",
                           standby.address.name);
    }
    if (!standby.streaming) return {};
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        const NodeStatus& node = topology.nodes[i];
        if (i == index || !is_at(node, standby.upstream)) continue;
        if (last_primary == i) {
            return fmt::format("{} still streams from the old primary {} ({}): it is alive, only pglane cannot reach it",
                               standby.address.name, node.address.name, standby.upstream);
        }
        if (is_standby(node)) return {};  // cascading from another standby proves nothing
        return fmt::format("{} streams from {} ({}), which is not an up standby", standby.address.name,
                           node.address.name, standby.upstream);
    }
    return fmt::format("{} streams from {}, which is no node pglane knows", standby.address.name,
                       standby.upstream);
}

[[nodiscard]] FailoverDecision refuse(std::string reason) {
    FailoverDecision decision;
    decision.refused = true;
    decision.reason = std::move(reason);
    return decision;
}

// Most WAL, then a standby that was synchronous, then config order. Not the timeline: a
// standby whose receiver stopped reports its last checkpoint's, which can be an old one.
[[nodiscard]] std::optional<std::size_t> pick_candidate(const Topology& topology) {
    std::optional<std::size_t> best;
    auto rank = [&](std::size_t i) {
        const NodeStatus& node = topology.nodes[i];
        return std::tuple(wal_position(node), was_synchronous(node));
    };
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        const NodeStatus& node = topology.nodes[i];
        // It must have answered the last probe: pg_promote is about to be sent to it.
        if (!is_standby(node) || node.consecutive_failures > 0) continue;
        if (!best || rank(i) > rank(*best)) best = i;
    }
    return best;
}

void append_conninfo_value(std::string& out, std::string_view key, std::string_view value) {
    if (!out.empty()) out += ' ';
    out += key;
    out += "='";
    for (char c : value) {
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
    }
    out += '\'';
}

[[nodiscard]] bool is_bare_name(std::string_view name) {
    if (name.empty() || !(std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_')) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
               c == '_';
    });
}

}  // namespace

FailoverDecision decide_failover(const Topology& topology, std::optional<std::size_t> last_primary,
                                 std::chrono::milliseconds primary_down_for,
                                 const FailoverSettings& settings) {
    if (topology.primary) return {};
    if (primary_down_for < std::chrono::milliseconds(settings.after_ms)) return {};

    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        if (!is_standby(topology.nodes[i])) continue;
        if (auto why = live_upstream(topology, i, last_primary); !why.empty()) return refuse(std::move(why));
    }
    const auto candidate = pick_candidate(topology);
    if (!candidate) return refuse("no standby is up");
    const NodeStatus& chosen = topology.nodes[*candidate];

    // Quorum commit: every acknowledged commit was flushed by some standby. One that is down
    // now but was seen further ahead may hold commits the candidate lacks.
    for (const NodeStatus& node : topology.nodes) {
        if (&node == &chosen || node.primary_seen_flush_lsn <= wal_position(chosen)) continue;
        return refuse(fmt::format("{} has WAL up to {} but {} was seen flushed to {}: promoting it could lose commits",
                                  chosen.address.name, format_lsn(wal_position(chosen)), node.address.name,
                                  format_lsn(node.primary_seen_flush_lsn)));
    }

    FailoverDecision decision;
    decision.act = FailoverAction::promote;
    decision.candidate = candidate;
    const std::string old_name =
        last_primary ? topology.nodes[*last_primary].address.name : std::string("the primary");
    decision.reason = fmt::format("{} down for {} ms; {} has the most WAL ({}, sync_state {})",
                                  old_name, primary_down_for.count(), chosen.address.name,
                                  format_lsn(wal_position(chosen)),
                                  chosen.sync_state.empty() ? "none" : chosen.sync_state);
    return decision;
}

FailoverDecision FailoverTracker::on_round(const Topology& topology, std::optional<std::size_t> last_primary,
                                           Duration now) {
    if (topology.primary) {
        if (topology.nodes[*topology.primary].consecutive_failures == 0) {
            // The outage (if any) is over: the next one starts afresh.
            outage_started_.reset();
            retry_not_before_.reset();
            logged_refusal_.clear();
        } else if (!outage_started_) {
            outage_started_ = now;  // failing, not down yet: the clock starts at the first failure
        }
        return {};
    }
    if (!outage_started_) outage_started_ = now;
    if (retry_not_before_ && now < *retry_not_before_) return {};
    FailoverDecision decision = decide_failover(topology, last_primary, now - *outage_started_, settings_);
    if (decision.refused && decision.reason != logged_refusal_) {
        log::warn("failover_refused", {{"reason", decision.reason}});
        logged_refusal_ = decision.reason;
    }
    return decision;
}

void FailoverTracker::attempt_failed(Duration now) {
    retry_not_before_ = now + Duration(settings_.after_ms);
}

std::optional<std::string> repoint_conninfo(std::string_view conninfo, std::string_view host,
                                            std::uint16_t port, std::string& error) {
    char* message = nullptr;
    std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(
        PQconninfoParse(std::string(conninfo).c_str(), &message), &PQconninfoFree);
    if (!options) {
        error = message != nullptr ? message : "out of memory";
        while (!error.empty() && error.back() == '\n') error.pop_back();
        PQfreemem(message);
        return std::nullopt;
    }
    std::string out;
    append_conninfo_value(out, "host", host);
    append_conninfo_value(out, "port", std::to_string(port));
    for (const PQconninfoOption* option = options.get(); option->keyword != nullptr; ++option) {
        if (option->val == nullptr) continue;
        const std::string_view keyword = option->keyword;
        // hostaddr would win over the new host; several hosts/ports collapse into the one.
        if (keyword == "host" || keyword == "hostaddr" || keyword == "port") continue;
        append_conninfo_value(out, keyword, option->val);
    }
    return out;
}

std::string unreachable_upstream(const NodeAddress& standby, const NodeAddress& primary) {
    const auto host_local = [](const NodeAddress& node) {
        if (node.on_unix_socket() || node.host == "localhost") return true;
        boost::system::error_code ec;
        const auto ip = boost::asio::ip::make_address(node.host, ec);
        return !ec && ip.is_loopback();
    };
    NodeAddress upstream = primary;
    upstream.host = primary.upstream_host();
    if (!host_local(upstream) || host_local(standby)) return {};
    return fmt::format("{}'s address for its standbys is {}, an address of pglane's own host, and pglane reaches {} "
                       "at {}: from {} that address may name its own host. Give {} a replication_host other hosts "
                       "can reach, or set {}'s primary_conninfo by hand",
                       primary.name, upstream.on_unix_socket() ? upstream.unix_socket_path() : upstream.host,
                       standby.name, standby.host, standby.name, primary.name, standby.name);
}

std::vector<std::string> repoint_hazards(std::span<const NodeAddress> nodes) {
    std::vector<std::string> hazards;
    for (const NodeAddress& primary : nodes) {
        for (const NodeAddress& standby : nodes) {
            if (&standby == &primary) continue;
            if (std::string why = unreachable_upstream(standby, primary); !why.empty())
                hazards.push_back(fmt::format("if {} is promoted: {}", primary.name, why));
        }
    }
    return hazards;
}

std::string quorum_standby_names(std::span<const std::string> names) {
    std::string list;
    for (const std::string& name : names) {
        if (!list.empty()) list += ", ";
        if (is_bare_name(name)) {
            list += name;
            continue;
        }
        list += '"';
        for (char c : name) {
            if (c == '"') list += '"';
            list += c;
        }
        list += '"';
    }
    return fmt::format("ANY 1 ({})", list);
}

std::string format_lsn(std::uint64_t lsn) {
    return fmt::format("{:X}/{:X}", lsn >> 32, lsn & 0xFFFFFFFFu);
}

std::string sql_literal(std::string_view value) {
    std::string out = "E'";
    for (char c : value) {
        if (c == '\\' || c == '\'') out += c;
        out += c;
    }
    out += '\'';
    return out;
}

}  // namespace pglane::health
