#pragma once
// Where each unit of a session's statements goes on the auto port, and what running it
// did to the session (pins, writes to wait for). Pure: no sockets, no clocks. A unit is one
// simple Query, or an extended-protocol batch up to Sync, and never spans two nodes.

#include "routing/classifier.hpp"

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>

namespace pglane::routing {

enum class ReadYourWrites { off, lsn, session };

enum class Volatility { immutable, stable, volatile_, unknown };

/// Function volatility from pg_proc, for one database. Built once, then read-only.
class FunctionCatalog {
public:
    /// `provolatile` as pg_proc stores it: 'i', 's' or 'v'.
    void add(std::string_view schema, std::string_view name, char provolatile);
    /// "schema.name" looks up that schema; a bare name takes the most volatile function of
    /// that name in any schema (pglane does not resolve search_path, so it assumes the worst).
    [[nodiscard]] Volatility lookup(std::string_view name) const;
    [[nodiscard]] std::size_t size() const { return qualified_.size(); }

private:
    std::unordered_map<std::string, Volatility> qualified_;
    std::unordered_map<std::string, Volatility> bare_;
};

/// How the auto port spreads a session's reads over the standbys.
enum class ReadBalance {
    statement,  // every read unit takes the next standby in the rotation
    session,    // a session keeps reading from the standby of its first read while that one
                // stays routable: reads never go back in time (monotonic), one backend stays warm
};

struct RoutingPolicy {
    ReadYourWrites read_your_writes = ReadYourWrites::lsn;
    ReadBalance read_balance = ReadBalance::statement;
    std::set<std::string, std::less<>> read_only_functions;  // VOLATILE but safe on a standby
    std::set<std::string, std::less<>> write_functions;      // always a write
};

enum class Destination { primary, standby, current };

/// Why a unit went where it went, as a metric label (the free-text reason is for logs).
#define PGLANE_ROUTE_REASONS(X) \
    X(read_only) X(write) X(function) X(transaction) X(pinned) X(hint) X(read_your_writes) X(no_standby) \
    X(unparseable) X(port)
#define PGLANE_ROUTE_REASON_ENUM(name) name,
enum class RouteReason : std::size_t { PGLANE_ROUTE_REASONS(PGLANE_ROUTE_REASON_ENUM) count };
#undef PGLANE_ROUTE_REASON_ENUM
[[nodiscard]] std::string_view to_string(RouteReason reason);

struct RouteDecision {
    Destination destination = Destination::primary;
    std::string reason;
    RouteReason category = RouteReason::write;
    /// Standby only if it has replayed the session's last write (read-your-writes "lsn").
    bool needs_replay_check = false;
};

/// One session's routing state. Owned by the session; touched by its worker thread only.
class SessionRouter {
public:
    explicit SessionRouter(const RoutingPolicy& policy) : policy_(policy) {}

    /// Where a unit goes. `catalog` may be null when the volatility of functions is not
    /// known (then any function call keeps the unit on the primary).
    [[nodiscard]] RouteDecision route(std::span<const Classification* const> unit, const FunctionCatalog* catalog,
                                      bool in_transaction) const;

    /// A read-only transaction may run on a standby, within read-your-writes.
    [[nodiscard]] RouteDecision read_only_transaction(std::string reason) const;

    /// After a unit ran. `on_primary`: it ran on the primary.
    void completed(std::span<const Classification* const> unit, bool on_primary);

    /// `SET pglane.route = ...`: false when the value is not primary, standby or auto.
    [[nodiscard]] bool set_route(std::optional<std::string_view> value);
    [[nodiscard]] RouteHint route_setting() const { return route_; }

    [[nodiscard]] PinReason pin() const { return pin_; }
    void unpin() { pin_ = PinReason::none; }
    /// Keeps the session on the primary from now on (state pglane cannot replay elsewhere).
    void pin(PinReason reason) { pin_ = reason; }

    /// Read-your-writes: the session wrote on the primary and no LSN bound was read since.
    [[nodiscard]] bool write_lsn_unknown() const { return write_lsn_unknown_; }
    /// The primary's LSN read after the session's last write: a safe bound for it.
    void write_lsn_known(std::uint64_t lsn) {
        write_lsn_ = lsn;
        write_lsn_unknown_ = false;
    }
    [[nodiscard]] std::uint64_t write_lsn() const { return write_lsn_; }
    [[nodiscard]] bool wrote() const { return wrote_; }

private:
    [[nodiscard]] std::optional<RouteDecision> explicit_route(const Classification& first,
                                                              std::span<const Classification* const> unit) const;
    [[nodiscard]] std::optional<std::string> function_blocks_standby(const Classification& statement,
                                                                     const FunctionCatalog* catalog) const;

    const RoutingPolicy& policy_;
    RouteHint route_ = RouteHint::auto_;
    PinReason pin_ = PinReason::none;
    bool wrote_ = false;
    bool write_lsn_unknown_ = false;
    std::uint64_t write_lsn_ = 0;
};

}  // namespace pglane::routing
