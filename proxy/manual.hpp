#pragma once
// `pglane --help`: the manual page, kept true to what main() and run_server() do (the
// integration test test_packaging.py checks each option and signal it names).

namespace pglane::proxy {

inline constexpr const char* manual = R"(NAME
    pglane - PostgreSQL wire-protocol proxy and load balancer for an HA cluster

SYNOPSIS
    pglane --config FILE
    pglane --check-config --config FILE
    pglane status [--url URL | --config FILE] [--watch [SECONDS]]
    pglane --version
    pglane --help

DESCRIPTION
    pglane stands in front of one PostgreSQL primary and its hot standbys. Clients connect
    to it as they would to PostgreSQL, on the ports of the config's "listen" section:
      listen.auto  one port for everything: each statement goes where it belongs (reads to
                   standbys, writes and transactions to the primary); needs an "auth" section
      listen.rw    every session goes to the elected primary
      listen.ro    every session goes to a healthy standby, round-robin (primary as fallback)
    With listen.unix_socket_dir, each port is also a Unix-domain socket there (.s.PGSQL.PORT).
    It probes every node, elects the primary (the node out of recovery on the highest
    timeline), holds back lagging standbys, follows promotions and, with failover.enabled,
    promotes a standby itself. "metrics_listen" serves /metrics (Prometheus), /status (JSON)
    and /health (200 when a primary is elected) over HTTP.
    Logs go to stderr, one event a line: time level event key=value ...
    The configuration keys are described in README.md ("Running pglane").

OPTIONS
    --config FILE, --config=FILE
        The JSON configuration file. Required to run.
    --check-config
        Validate the configuration and exit; an error names the offending key. With
        failover.enabled, warns of standbys a promotion could not re-point (a host-local
        address of the new primary, no replication_host); the configuration stays valid.
    --version
        Print the version and exit.
    --help, -h
        Print this manual and exit.

SUBCOMMANDS
    status [--url URL | --config FILE] [--watch [SECONDS]]
        Read a running pglane's /status and print the cluster as a table: node, role, up or
        DOWN, timeline, replay lag (bytes and seconds), routing (writes, reads, HELD BACK,
        FENCED), server connections, notes.
        --url URL          http://HOST:PORT[/PATH] or HOST:PORT of the metrics endpoint
                           (default http://127.0.0.1:9187/status)
        --config FILE      take the address from FILE's metrics_listen
        --watch [SECONDS]  clear the screen and refresh every SECONDS (default 2) until Ctrl-C

SIGNALS
    SIGTERM
        Drain: stop accepting, close each client session with FATAL 57P01 ("pglane is
        shutting down") once it is outside a transaction, the rest after shutdown_timeout_ms
        (default 30000), end the server connections and exit 0.
    SIGINT
        The same at once: every session is closed without waiting for open transactions.
    SIGPIPE
        Ignored (a vanished peer is an error on its own connection only).
    SIGHUP
        Reload: read the configuration file again and apply, without touching a session,
        the node list (nodes[]: added nodes are probed and routed to from the next round;
        sessions move off removed ones between transactions; a changed weight applies from
        the next read), log_level, the users file's
        contents, limits.max_client_connections (and _per_user,
        _by_user), health.max_lag_bytes / max_lag_seconds, and the contents of
        tls.cert_file and tls.key_file (renewed certificates serve new clients; a pair that
        does not load refuses the reload). A file that does not parse,
        or that changes any other setting, is refused as a whole (config_reload_refused in
        the log, naming the reason) and the running configuration stays; apply those with
        a restart. The admin console's RELOAD does the same.

TLS
    Clients: with tls.cert_file and tls.key_file, an SSLRequest is answered with a TLS
    handshake on every port (tls.mode allow); tls.mode require also refuses plaintext
    sessions with FATAL 28000. Servers: nodes[].sslmode (default tls.server_sslmode, itself
    default prefer) is libpq's sslmode for pglane's connections and health probes; verify-ca
    and verify-full check the servers against tls.server_ca_file. Where pglane authenticates
    clients, SCRAM-SHA-256-PLUS is offered over TLS (channel_binding=require works). On rw
    and ro without an
    "auth" section the server authenticates the client through pglane, and SCRAM's channel
    binding cannot cross a proxy: pglane offers clients SCRAM-SHA-256 without -PLUS, and a
    server reached over TLS refuses TLS clients that would bind (libpq's
    channel_binding=prefer) - give those ports an "auth" section, or such clients
    channel_binding=disable.

FILES
    The configuration file given with --config (no default path; packaging/pglane.service
    uses /etc/pglane/pglane.json), the PgBouncer-format users file named by
    auth.users_file, and the PEM files named by tls.cert_file, tls.key_file and
    tls.server_ca_file. pglane writes no files.

EXIT STATUS
    0   stopped by SIGTERM or SIGINT; the configuration is valid (--check-config); --version,
        --help; status printed
    1   invalid configuration, a port that cannot be bound, any other fatal error; status:
        pglane unreachable or its answer unusable
    2   bad command line

EXAMPLES
    pglane --check-config --config /etc/pglane/pglane.json
    pglane --config /etc/pglane/pglane.json
    pglane status --url 127.0.0.1:9187
    pglane status --config /etc/pglane/pglane.json --watch 1
    psql "host=127.0.0.1 port=6432 user=app dbname=app"
)";

}  // namespace pglane::proxy
