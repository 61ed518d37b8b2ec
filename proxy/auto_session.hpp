#pragma once
// A client session that pglane authenticates itself and serves over connections it opens
// on the client's behalf: the auto port (statement routing), and the rw and ro ports when
// an "auth" section is configured. Every unit (one Query, or extended-protocol messages up
// to Sync) runs on one node; transactions stay on one node; SET values and prepared
// statements follow the session to whichever node runs its next unit.

#include "proxy/client_session.hpp"
#include "proxy/server_connection.hpp"
#include "proxy/server_pool.hpp"
#include "routing/classifier.hpp"
#include "routing/session_router.hpp"

#include <boost/asio.hpp>

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace pglane::proxy {

/// The most an AutoSession's client input buffer grows to for a stream of small messages
/// (one larger message is held whole whatever its size).
inline constexpr std::size_t client_buffer_max_bytes = 16 * 1024;

/// A statement prepared by the client (protocol Parse or SQL PREPARE), kept so it can be
/// prepared again on another node. `version` tells which nodes hold this very definition.
struct PreparedStatement {
    std::string definition;   // the Parse message as servers get it, or the PREPARE statement's SQL
    std::string server_name;  // the name on servers: the client's, or a pooled name (statement_names.hpp)
    std::string query;        // the statement's SQL (a SET is replayed from it when executed)
    std::uint64_t version = 0;
    routing::Classification classification;
};

/// A first-in first-out queue of flags that allocates nothing until used (std::deque takes
/// a 512-byte block at construction: two per idle session).
class ReplyQueue {
public:
    void push_back(bool injected) { items_.push_back(injected); }
    [[nodiscard]] bool empty() const { return head_ == items_.size(); }
    [[nodiscard]] bool front() const { return items_[head_]; }
    void pop_front() {
        if (++head_ == items_.size()) clear();
    }
    void clear() {
        items_.clear();
        head_ = 0;
    }

private:
    std::vector<bool> items_;
    std::size_t head_ = 0;
};

/// One unit of client messages, routed as a whole.
struct Unit {
    std::string bytes;                                  // client messages as received
    std::vector<routing::Classification> statements;   // everything that decides the route
    std::vector<routing::Classification> executed;     // what runs: Queries and Bound statements
    std::vector<char> reply_order;                      // 'P' and 'C' (statement) messages, in order
    std::vector<std::string> needs_statement;           // Bind/Describe names not Parsed in this unit
    std::vector<std::string> parses;                    // names this unit Parses
    std::vector<std::string> closes;                    // statement names this unit Closes, as servers know them
    std::vector<std::string> sql_prepares, sql_executes;
    std::vector<std::string> session_sql;               // SET-like statements to replay elsewhere
    /// Statements Parsed after a DEALLOCATE of their name (or DEALLOCATE ALL) that runs
    /// earlier in this unit: the one the DEALLOCATE drops (the node must hold it first), and
    /// what the session holds under the name once the unit is over.
    struct Reparsed {
        std::string name;
        PreparedStatement dropped;
        PreparedStatement statement;
    };
    std::vector<Reparsed> reparsed;
    bool runs_statements = false;      // has a Query, Bind, Execute, FunctionCall or COPY data
    bool ends_with_flush = false;      // its last message so far is a Flush
    bool describes = false;            // has a Describe: the client reads the result's shape afresh
    bool per_column_formats = false;   // a Bind names a format per result column
    bool simple = false;       // a simple Query
    bool complete = false;     // ends with Sync, Query or FunctionCall
    bool terminate = false;    // the client sent Terminate

    /// Empty again, keeping what its members allocated up to `keep_bytes` of message bytes:
    /// a session reuses one Unit, so a unit like the last one allocates nothing, and an idle
    /// session does not hold the memory of its largest message.
    void clear(std::size_t keep_bytes);
};

/// Owned by its coroutine's frame; touched by one worker thread only.
class AutoSession final : public FenceableSession {
public:
    AutoSession(StreamSocket client, ListenerKind kind, SessionServices& services);
    ~AutoSession() override;

    asio::awaitable<void> run();
    void fence(Disconnect why) override;
    void on_topology(const health::Topology& topology) override;
    void drain(Disconnect why) override;
    void describe(int worker, std::vector<admin::ClientInfo>& clients,
                  std::vector<admin::ServerInfo>& servers) const override;

private:
    enum class Outcome { done, retry_on_primary, replan };

    // startup
    asio::awaitable<std::optional<Disconnect>> startup();
    asio::awaitable<std::optional<Disconnect>> login(protocol::StartupPacket packet);
    asio::awaitable<void> finish(Disconnect why);
    asio::awaitable<std::optional<Disconnect>> greet(ServerConnection& server);
    /// Auto port without pooling, not a replication connection: greetings are cached.
    [[nodiscard]] bool greets_from_cache() const;
    /// Greets the client from services_.greetings when the primary greeted the same startup
    /// packet lately (and sets `greeted`); otherwise does nothing.
    asio::awaitable<std::optional<Disconnect>> greet_from_cache(const health::Topology& topology, bool& greeted);
    void remember_greeting(const ServerConnection& primary);
    /// Greets the client with parameters `node` gave an earlier login (the pool's or the
    /// cache's greeting); cancels reach a server only once one runs this client's statements.
    asio::awaitable<std::optional<Disconnect>> greet_remembered(const GreetingCache::Parameters& parameters,
                                                                std::size_t node);
    /// The in_hot_standby a greeting from `node` reports on this session's port.
    [[nodiscard]] std::string_view in_hot_standby(std::size_t node) const;
    asio::awaitable<std::optional<Disconnect>> greet_from_pool(const health::Topology& topology, bool& greeted);
    // the admin console (database "pglane", admin.users): auto_session_admin.cpp
    asio::awaitable<std::optional<Disconnect>> greet_admin();
    asio::awaitable<Disconnect> serve_admin();
    asio::awaitable<void> answer_admin(std::string_view query, std::string& out);
    asio::awaitable<void> admin_pause(std::string& out);
    asio::awaitable<std::optional<Disconnect>> wait_while_paused();
    // the unit loop
    asio::awaitable<Disconnect> serve();
    asio::awaitable<std::optional<Disconnect>> read_unit(Unit& unit);
    [[nodiscard]] std::optional<Disconnect> take_client_message(Unit& unit, char tag, protocol::Bytes body,
                                                                protocol::Bytes raw);
    void need_protocol_statement(Unit& unit, const std::string& name);
    void need_deallocated_statement(Unit& unit, const routing::Classification& c);
    void name_parsed_statements_for_pool(Unit& unit, protocol::Bytes raw, std::string_view sql,
                                         const routing::Classification& c);
    void keep_off_standbys(const Unit& unit);
    /// The client's name for a statement a pooled server knows as `pooled`; empty if none.
    [[nodiscard]] std::string client_statement_name(std::string_view pooled) const;
    /// Which of pglane's own answers below may serve the unit instead of a server: the cheap
    /// part of their conditions, so that most units decide without a coroutine frame.
    enum class OwnAnswer { none, pglane_setting, deallocate, lone_begin };
    [[nodiscard]] OwnAnswer own_answer(const Unit& unit) const;
    asio::awaitable<bool> answer_pglane_setting(const Unit& unit);
    asio::awaitable<bool> answer_deallocate(const Unit& unit);
    asio::awaitable<bool> defer_begin(const Unit& unit);
    [[nodiscard]] bool answer_lone_begin(const Unit& unit, std::string& out) const;
    asio::awaitable<std::optional<Disconnect>> relay_notifications(ServerConnection& server);
    // node choice
    asio::awaitable<std::variant<ServerConnection*, Disconnect>> choose_server(const Unit& unit);
    asio::awaitable<ServerConnection*> choose_standby(const routing::RouteDecision& decision);
    asio::awaitable<bool> standby_has_replayed(ServerConnection& standby);
    /// The elected primary's connection; `wait`: up to failover.hold_ms for one to be elected.
    asio::awaitable<std::variant<ServerConnection*, Disconnect>> primary_server(bool wait = true);
    /// Drops the connection to a primary that is no longer elected; the next write opens one
    /// to the new primary (with the session's state replayed).
    void follow_new_primary();
    asio::awaitable<std::optional<Disconnect>> fail_unit(Unit& unit, const Disconnect& why);
    asio::awaitable<std::variant<ServerConnection*, ServerFailure>> ready_server(std::size_t node);
    /// ready_server() without waiting: the session's own connection to `node` when it is
    /// usable as it is (no reconnect, no settings to replay), else nullptr. Saves a
    /// coroutine frame per unit on the usual path.
    [[nodiscard]] ServerConnection* ready_server_now(std::size_t node);
    /// The session's own connection to the primary it writes to, unless it has none or it broke.
    [[nodiscard]] ServerConnection* held_primary() const;
    /// primary_server(false)'s connection, or nullptr where it would end in a Disconnect.
    asio::awaitable<ServerConnection*> primary_or_null();
    asio::awaitable<void> load_function_catalog();
    // running a unit
    asio::awaitable<std::optional<Disconnect>> run_unit(Unit& unit);
    asio::awaitable<std::variant<Outcome, Disconnect>> execute(Unit& unit, ServerConnection& server, bool may_retry,
                                                               bool may_replan = false);
    asio::awaitable<bool> prepare_sql_statements(const Unit& unit, ServerConnection& server);
    [[nodiscard]] std::string injections(const Unit& unit, ServerConnection& server);
    void expect_replies(const Unit& unit);
    void after_unit(const Unit& unit, ServerConnection& server, protocol::TransactionStatus before);
    void remember_settings(const Unit& unit, ServerConnection& server, protocol::TransactionStatus before);
    void remember_sql_statements(const Unit& unit, ServerConnection& server);
    asio::awaitable<std::optional<Disconnect>> forward_more_client_messages(Unit& unit, ServerConnection& server,
                                                                           bool& copy_in);
    void point_cancel_at(ServerConnection& server);
    void track_sent(const Unit& unit, ServerConnection& server);
    /// After a failed unit or a stale plan: the statements it brought are prepared anew next time.
    void prepare_again_next_time(const Unit& unit, ServerConnection& server);

    // transaction pooling (auto_session_pool.cpp)
    [[nodiscard]] std::optional<Disconnect> prepare_pooled_startup();
    [[nodiscard]] asio::awaitable<std::optional<ServerFailure>> acquire_server(std::size_t node);
    [[nodiscard]] std::string catch_up_statement(const ServerConnection& server) const;
    /// Whether catch_up_statement(server) would say anything.
    [[nodiscard]] bool needs_catch_up(const ServerConnection& server) const;
    [[nodiscard]] bool keeps_connections() const;
    [[nodiscard]] bool may_replan(const Unit& unit) const;
    asio::awaitable<void> release_servers();
    void close_removed_nodes(const health::Topology& topology);
    [[nodiscard]] health::NodeAddress node_address(std::size_t node) const;
    asio::awaitable<void> give_back(std::size_t node);
    /// Gives a connection borrowed for a question of pglane's own (a replay LSN) back to its
    /// pool at once, where release_servers() would at the end of the unit.
    asio::awaitable<void> give_back_between_units(std::size_t node);
    void drop_server(std::size_t node);
    [[nodiscard]] ServerPool& pool_of(std::size_t node);
    [[nodiscard]] bool append_client_message(Unit& unit, char tag, protocol::Bytes body, protocol::Bytes raw,
                                             std::string_view client_name);
    [[nodiscard]] const std::string& server_name_of(const std::string& client_name) const;

    [[nodiscard]] asio::awaitable<bool> write_client(std::string_view bytes);
    /// After the client's socket said it is readable: what it sent, without waiting (the
    /// socket is non-blocking; a wake-up can be a cancellation). False: EOF or an error.
    [[nodiscard]] bool read_client_now();
    /// A client message whose length cannot be right: counted; the session ends with 08P01.
    [[nodiscard]] Disconnect malformed_message(const protocol::Frame& frame);
    [[nodiscard]] const routing::Classification& classify(std::string_view sql);
    [[nodiscard]] std::optional<std::size_t> elected_primary() const;

    SessionServices& services_;
    ListenerKind kind_;
    std::uint64_t id_;
    Stream client_;
    ByteBuffer client_in_;
    std::string peer_;
    std::vector<std::pair<std::string, std::string>> startup_parameters_;
    std::string user_;
    std::string database_;
    ServerCredentials credentials_;
    std::vector<std::unique_ptr<ServerConnection>> servers_;   // by node index, opened lazily
    std::optional<std::size_t> primary_node_;                  // the primary this session writes to
    std::uint64_t primary_term_ = 0;
    std::optional<std::size_t> pinned_standby_;                // ro port with pglane auth
    std::optional<std::size_t> read_standby_;                  // the standby of the last read
    bool pinned_standby_removed_ = false;                      // a reload removed it (on_topology)
    std::optional<std::size_t> transaction_node_;
    protocol::TransactionStatus status_ = protocol::TransactionStatus::idle;
    routing::SessionRouter router_;
    std::shared_ptr<const routing::FunctionCatalog> catalog_;
    std::unordered_map<std::string, PreparedStatement> statements_;
    std::unordered_map<std::string, PreparedStatement> sql_statements_;
    std::vector<std::string> settings_;          // session SETs, replayed on every new connection
    std::vector<std::string> pending_settings_;  // SETs inside the open transaction: kept only if it commits
    std::string deferred_begin_;                 // a BEGIN answered by pglane, sent with the next unit
    bool deferred_read_only_ = false;            // ...and it said READ ONLY
    bool deferred_serializable_ = false;         // ...or SERIALIZABLE, which no standby runs
    int swallow_until_ready_ = 0;                // answers to a deferred BEGIN, up to its ReadyForQuery
    int injected_syncs_ = 0;                     // ...of which pglane's Sync after a Query's statement (0 or 1)
    bool injection_failed_ = false;              // that statement's Parse failed
    std::string injection_error_;                // ...and the server's ErrorResponse to it (the first)
    /// Parse and Close messages sent in the running unit, in order, true when pglane injected
    /// them: their ParseComplete/CloseComplete answers arrive in the same order.
    ReplyQueue parse_replies_;
    ReplyQueue close_replies_;
    bool savepoint_in_transaction_ = false;
    bool unit_failed_ = false;
    std::string retry_sqlstate_;   // the standby's refusal a read is retried after ("": lost connection)
    std::size_t client_parses_completed_ = 0;   // ParseCompletes of the client's own Parses, this unit
    /// A pooled unit that only prepared and described was ended at its Flush with a Sync of
    /// pglane's own and failed: as a server would, skip the client's messages up to its Sync.
    bool skip_until_sync_ = false;
    std::uint64_t next_version_ = 1;
    int max_lag_ms_ = -1;
    std::optional<protocol::BackendKey> client_key_;
    std::optional<protocol::BackendKey> cancel_key_;  // the server session cancels go to now
    std::vector<ServerPool*> pools_;                  // by node, when pooling; looked up once
    std::string startup_settings_;                    // set_config() of the client's startup parameters
    std::string scratch_;
    // Reused from unit to unit so that the hot path allocates nothing (issue 5).
    Unit unit_;
    std::string server_out_;                              // what execute() sends the server
    std::vector<asio::const_buffer> client_pieces_;       // what execute() relays to the client
    std::list<std::string> renamed_errors_;               // ...and errors it rewrote (stable addresses;
                                                          // a std::deque takes 512 bytes per idle session)
    std::string held_descriptions_;                       // what execute() keeps back while it may retry
    std::vector<const routing::Classification*> routed_;  // the unit's statements, for the router
    std::vector<std::size_t> candidates_;                 // choose_standby's nodes, best first
    asio::steady_timer fence_timer_;
    std::optional<Disconnect> fence_;
    std::optional<Disconnect> drain_;  // ends the session once it is outside a transaction
    bool client_terminated_ = false;
    routing::RouteReason last_reason_ = routing::RouteReason::port;
    bool admin_ = false;      // an admin console session: no servers, pglane answers
    bool in_unit_ = false;    // between reading a unit and its end (SHOW CLIENTS: active)
    bool paused_ = false;     // waiting for RESUME
    bool waiting_idle_ = false;  // in read_unit's wait on the client alone (drain() cancels it)
    std::chrono::steady_clock::time_point connected_at_ = std::chrono::steady_clock::now();
};

/// Serves one accepted connection with pglane's own authentication.
asio::awaitable<void> serve_authenticated_client(StreamSocket socket, ListenerKind kind, SessionServices& services);

}  // namespace pglane::proxy
