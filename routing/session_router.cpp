#include "routing/session_router.hpp"

#include <algorithm>
#include <string>

namespace pglane::routing {

namespace {

Volatility from_provolatile(char c) {
    switch (c) {
        case 'i': return Volatility::immutable;
        case 's': return Volatility::stable;
        case 'v': return Volatility::volatile_;
        default: return Volatility::unknown;
    }
}

Volatility worst(Volatility a, Volatility b) {
    auto rank = [](Volatility v) { return v == Volatility::unknown ? 3 : static_cast<int>(v); };
    return rank(a) >= rank(b) ? a : b;
}

bool syntactically_read_only(std::span<const Classification* const> unit) {
    return std::all_of(unit.begin(), unit.end(), [](const Classification* c) { return c->parsed && c->read_only; });
}

}  // namespace

std::string_view to_string(RouteReason reason) {
#define PGLANE_ROUTE_REASON_NAME(name) \
    case RouteReason::name: return #name;
    switch (reason) {
        PGLANE_ROUTE_REASONS(PGLANE_ROUTE_REASON_NAME)
        case RouteReason::count: break;
    }
#undef PGLANE_ROUTE_REASON_NAME
    return "unknown";
}

void FunctionCatalog::add(std::string_view schema, std::string_view name, char provolatile) {
    Volatility v = from_provolatile(provolatile);
    std::string qualified = std::string(schema) + "." + std::string(name);
    auto [q, inserted_q] = qualified_.try_emplace(qualified, v);
    if (!inserted_q) q->second = worst(q->second, v);
    auto [b, inserted_b] = bare_.try_emplace(std::string(name), v);
    if (!inserted_b) b->second = worst(b->second, v);
}

Volatility FunctionCatalog::lookup(std::string_view name) const {
    const auto& table = name.find('.') == std::string_view::npos ? bare_ : qualified_;
    auto it = table.find(std::string(name));
    return it == table.end() ? Volatility::unknown : it->second;
}

std::optional<std::string> SessionRouter::function_blocks_standby(const Classification& statement,
                                                                  const FunctionCatalog* catalog) const {
    for (const std::string& function : statement.functions) {
        if (policy_.write_functions.contains(function)) return "write function " + function;
        if (policy_.read_only_functions.contains(function)) continue;
        if (!catalog) return "function volatility not known yet: " + function;
        switch (catalog->lookup(function)) {
            case Volatility::immutable:
            case Volatility::stable: break;
            case Volatility::volatile_: return "volatile function " + function;
            case Volatility::unknown: return "unknown function " + function;
        }
    }
    return std::nullopt;
}

std::optional<RouteDecision> SessionRouter::explicit_route(const Classification& first,
                                                           std::span<const Classification* const> unit) const {
    RouteHint hint = first.hint != RouteHint::none && first.hint != RouteHint::auto_ ? first.hint : route_;
    bool from_comment = first.hint == RouteHint::primary || first.hint == RouteHint::standby;
    if (hint == RouteHint::primary) {
        return RouteDecision{Destination::primary, from_comment ? "route hint comment" : "SET pglane.route",
                             RouteReason::hint};
    }
    // A standby hint waives the function-volatility proof, never the syntax: a statement that
    // writes by its very form still goes to the primary.
    if (hint == RouteHint::standby && syntactically_read_only(unit)) {
        return RouteDecision{Destination::standby, from_comment ? "route hint comment" : "SET pglane.route",
                             RouteReason::hint};
    }
    return std::nullopt;
}

RouteDecision SessionRouter::route(std::span<const Classification* const> unit, const FunctionCatalog* catalog,
                                   bool in_transaction) const {
    if (in_transaction) return {Destination::current, "inside a transaction", RouteReason::transaction};
    if (pin_ != PinReason::none)
        return {Destination::primary, std::string("pinned: ") + to_string(pin_), RouteReason::pinned};
    if (unit.empty()) return {Destination::primary, "no statement", RouteReason::write};
    const Classification& first = *unit.front();
    for (const Classification* c : unit) {
        if (!c->parsed)
            return {Destination::primary, c->reason.empty() ? "unparseable" : c->reason, RouteReason::unparseable};
    }
    if (auto decision = explicit_route(first, unit)) return *decision;
    if (first.transaction == TransactionControl::begin_read_only && unit.size() == 1)
        return read_only_transaction("BEGIN READ ONLY");
    for (const Classification* c : unit) {
        if (c->transaction == TransactionControl::begin)
            return {Destination::primary, "transaction", RouteReason::transaction};
        if (!c->read_only)
            return {Destination::primary, c->reason.empty() ? "not read-only" : c->reason, RouteReason::write};
        if (auto why = function_blocks_standby(*c, catalog)) return {Destination::primary, *why, RouteReason::function};
    }
    if (wrote_) {
        if (policy_.read_your_writes == ReadYourWrites::session)
            return {Destination::primary, "read-your-writes: the session wrote", RouteReason::read_your_writes};
        if (policy_.read_your_writes == ReadYourWrites::lsn)
            return {Destination::standby, "read-only", RouteReason::read_only, true};
    }
    return {Destination::standby, "read-only", RouteReason::read_only};
}

RouteDecision SessionRouter::read_only_transaction(std::string reason) const {
    if (pin_ != PinReason::none)
        return {Destination::primary, std::string("pinned: ") + to_string(pin_), RouteReason::pinned};
    if (wrote_ && policy_.read_your_writes == ReadYourWrites::session)
        return {Destination::primary, "read-your-writes: the session wrote", RouteReason::read_your_writes};
    bool check = wrote_ && policy_.read_your_writes == ReadYourWrites::lsn;
    return {Destination::standby, std::move(reason), RouteReason::transaction, check};
}

void SessionRouter::completed(std::span<const Classification* const> unit, bool on_primary) {
    for (const Classification* c : unit) {
        if (c->discard_all) pin_ = PinReason::none;
        if (c->pin != PinReason::none) pin_ = c->pin;
    }
    // SET, BEGIN, COMMIT and provable reads change no data by themselves; anything else on
    // the primary may have, and later reads must see it.
    bool may_have_written = std::any_of(unit.begin(), unit.end(), [](const Classification* c) {
        bool pure_read = c->parsed && c->read_only && c->functions.empty();
        return !pure_read && !c->session_state && c->transaction == TransactionControl::none;
    });
    if (on_primary && may_have_written) {
        wrote_ = true;
        write_lsn_unknown_ = true;
    }
}

bool SessionRouter::set_route(std::optional<std::string_view> value) {
    if (!value || *value == "auto") route_ = RouteHint::auto_;
    else if (*value == "primary") route_ = RouteHint::primary;
    else if (*value == "standby") route_ = RouteHint::standby;
    else return false;
    return true;
}

}  // namespace pglane::routing
