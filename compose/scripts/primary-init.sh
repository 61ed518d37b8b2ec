#!/bin/sh
# Prepares a freshly initdb'd, running primary for the pglane HA cluster:
# replication role, superuser password, one physical slot per standby, quorum synchronous
# replication and WAL archiving. Safe to run again (roles/slots are created only if missing,
# settings are overwritten with the same values).
#
# Runs unchanged
#   - from compose/local-cluster (as the postgres OS user), and
#   - from docker-entrypoint-initdb.d in the postgres:15 image: the entrypoint has run initdb
#     and started a temporary server on its unix socket; the file must be executable so the
#     entrypoint executes it instead of sourcing it into its own bash.
#
# Environment:
#   PGHOST, PGPORT, PGUSER  how psql reaches the primary (libpq defaults otherwise)
#   POSTGRES_PASSWORD       password to set for the connecting superuser
#   REPLICATION_PASSWORD    password of role `replicator`
#   STANDBY_NAMES           space-separated standby node names, e.g. "n1 n2"; each names a
#                           slot and an application_name in synchronous_standby_names
#   ARCHIVE_DIR             shared WAL archive directory, outside every PGDATA
set -eu

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
: "${STANDBY_NAMES:?STANDBY_NAMES must list the standby node names, e.g. \"n1 n2\"}"
: "${ARCHIVE_DIR:?ARCHIVE_DIR must be set}"

log() { echo "primary-init: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Node names become slot names (lower-case letters, digits, underscore) and appear unquoted
# in synchronous_standby_names, so allow nothing else.
sync_list=""
for name in $STANDBY_NAMES; do
    case "$name" in
        *[!a-z0-9_]*) die "standby name '$name' may only contain a-z, 0-9 and _" ;;
    esac
    sync_list="${sync_list:+$sync_list, }$name"
done
[ -n "$sync_list" ] || die "STANDBY_NAMES is empty"

# The directory is embedded in a shell command inside a quoted setting: keep it plain.
case "$ARCHIVE_DIR" in
    /*) ;;
    *) die "ARCHIVE_DIR must be an absolute path: $ARCHIVE_DIR" ;;
esac
case "$ARCHIVE_DIR" in
    *[!A-Za-z0-9_./-]*) die "ARCHIVE_DIR may only contain A-Z a-z 0-9 _ . / -: $ARCHIVE_DIR" ;;
esac
mkdir -p "$ARCHIVE_DIR"
[ -w "$ARCHIVE_DIR" ] || die "ARCHIVE_DIR $ARCHIVE_DIR is not writable by $(id -un)"

# Never overwrite an archived segment: a second primary (after failover) archiving a file
# with the same name must fail loudly, not silently corrupt the archive.
archive_command="test ! -f $ARCHIVE_DIR/%f && cp %p $ARCHIVE_DIR/%f"

# Results (slot rows, pg_reload_conf) are noise here; errors still reach stderr.
psql_sql() {
    psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@" >/dev/null
}

# Passwords travel as psql variables (:'name' quotes them as literals), never spliced into
# SQL text. Roles and the superuser password come before synchronous_standby_names: once
# that is set, every commit waits for a standby that does not exist yet.
psql_sql -v replication_password="$REPLICATION_PASSWORD" \
         -v superuser_password="$POSTGRES_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE replicator WITH LOGIN REPLICATION'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'replicator') \gexec
ALTER ROLE replicator WITH LOGIN REPLICATION PASSWORD :'replication_password';
ALTER ROLE CURRENT_USER WITH PASSWORD :'superuser_password';
SQL
log "role replicator ready; superuser password set"

for name in $STANDBY_NAMES; do
    psql_sql -v slot="$name" <<'SQL'
SELECT pg_create_physical_replication_slot(:'slot')
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = :'slot');
SQL
done
log "physical replication slots: $STANDBY_NAMES"

# ALTER SYSTEM writes postgresql.auto.conf inside PGDATA, which pg_basebackup copies to the
# standbys (standby-bootstrap.sh then adjusts their copy).
psql_sql -v sync_names="ANY 1 ($sync_list)" -v archive_command="$archive_command" <<'SQL'
ALTER SYSTEM SET synchronous_standby_names = :'sync_names';
ALTER SYSTEM SET archive_command = :'archive_command';
SELECT pg_reload_conf();
SQL
log "synchronous_standby_names = 'ANY 1 ($sync_list)'; archiving to $ARCHIVE_DIR"
