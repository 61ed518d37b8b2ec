#pragma once
// Statement classification with the real PostgreSQL parser (libpg_query, PG 15 grammar).
// Pure: text in, facts out. Everything comes from the raw parse tree except the route-hint
// comment, which the parser drops and a small prefix scan reads.
//
// The classifier answers "could this run on a hot standby with the same result?" and lists
// what the session layer must know (transaction control, session state, pins, prepared
// statement names, pglane's own settings). It does not know the catalog: `read_only` holds
// only if every name in `functions` is also read-only, which the caller checks against
// pg_proc volatility. See https://www.postgresql.org/docs/15/hot-standby.html for what a
// standby accepts.
//
// Threads: libpg_query keeps its memory contexts in thread-local storage and initialises
// them on first use in each thread (released at thread exit), so `classify` may be called
// from any number of threads at once.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pglane::routing {

enum class TransactionControl {
    none,
    begin,                      // BEGIN / START TRANSACTION (read-write or unspecified)
    begin_read_only,            // BEGIN READ ONLY / START TRANSACTION READ ONLY
    commit,                     // COMMIT / END (also COMMIT AND CHAIN)
    rollback,                   // ROLLBACK / ABORT
    savepoint,                  // SAVEPOINT / RELEASE / ROLLBACK TO SAVEPOINT
    set_transaction_read_only,  // SET TRANSACTION READ ONLY
    set_transaction_primary,    // SET TRANSACTION READ WRITE or ISOLATION LEVEL SERIALIZABLE (also as
                                // SET transaction_isolation): a transaction no standby can run
    prepare_transaction,        // PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED
    other,                      // any other SET TRANSACTION (an isolation level a standby runs, ...)
};

/// Why a session must stay on the primary from now on (until DISCARD ALL).
enum class PinReason {
    none,
    temporary_table,             // CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP, pg_temp.x
    listen,                      // LISTEN
    advisory_lock,               // session-level pg_advisory_lock / pg_try_advisory_lock
    with_hold_cursor,            // DECLARE ... WITH HOLD
    session_read_write_default,  // session-level SET [default_]transaction_read_only,
                                 // SET SESSION CHARACTERISTICS AS TRANSACTION ...,
                                 // SET default_transaction_isolation = serializable
    other,
};

/// A per-statement steer from a leading comment `/* pglane: route=primary */`.
enum class RouteHint { none, primary, standby, auto_ };

struct Classification {
    bool parsed = false;     // false: unparseable, so the primary
    bool read_only = false;  // provably read-only PROVIDED every name in `functions` is read-only
    std::string reason;      // why not read-only, or what made it a read ("select", "show", ...)
    /// Every function called, as written (schema-qualified when written so; the parser folds
    /// unquoted names to lower case and keeps quoted ones verbatim), deduplicated, in order.
    std::vector<std::string> functions;
    TransactionControl transaction = TransactionControl::none;
    bool session_state = false;  // SET/RESET (not LOCAL), DISCARD, LOAD, set_config(..., false)
    bool discard_all = false;
    /// BEGIN / START / SET TRANSACTION ... ISOLATION LEVEL SERIALIZABLE: no standby runs it.
    bool serializable = false;
    PinReason pin = PinReason::none;
    std::string prepare_name;  // SQL PREPARE name (read_only/functions describe the inner statement)
    /// SQL EXECUTE name (also from EXPLAIN [ANALYZE] EXECUTE name). An EXECUTE is never
    /// read_only by itself: the caller combines the prepared statement's classification with
    /// `parameters_read_only`, which covers the EXECUTE's own parameter expressions.
    std::string execute_name;
    bool parameters_read_only = false;
    std::string deallocate_name;
    bool deallocate_all = false;
    RouteHint hint = RouteHint::none;
    /// `SET pglane.route = 'x'` -> ("pglane.route", "x"); `RESET pglane.route` or
    /// `SET pglane.route TO DEFAULT` -> ("pglane.route", nullopt). Answered by pglane.
    std::optional<std::string> pglane_setting_name;
    std::optional<std::string> pglane_setting_value;
    int statement_count = 0;
};

/// Classifies a simple-query string (one or more statements). Never throws on bad SQL:
/// unparseable text comes back with parsed = false and the parser's message in `reason`.
[[nodiscard]] Classification classify(std::string_view sql);

/// The route hint in the comments before the first token, or none. Exposed for tests and
/// for callers that only need the hint.
[[nodiscard]] RouteHint leading_route_hint(std::string_view sql);

[[nodiscard]] const char* to_string(TransactionControl transaction);
[[nodiscard]] const char* to_string(PinReason pin);
[[nodiscard]] const char* to_string(RouteHint hint);

}  // namespace pglane::routing
