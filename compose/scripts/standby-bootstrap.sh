#!/bin/sh
# Turns an empty PGDATA into a streaming standby of the primary: base backup through the
# node's own replication slot, standby.signal, and the recovery settings in
# postgresql.auto.conf. Does not start postgres: compose/local-cluster starts it with
# pg_ctl, a container `exec`s postgres after this script. If PGDATA already holds a cluster
# (container restart, `local-cluster start`), it does nothing.
#
# Environment:
#   PGDATA                data directory to create (absent or empty)
#   NODE_NAME             this node's name: slot name and application_name (a-z 0-9 _)
#   PRIMARY_HOST          primary's host name or address
#   PRIMARY_PORT          primary's port (default 5432)
#   REPLICATION_PASSWORD  password of role `replicator`
#   ARCHIVE_DIR           shared WAL archive (restore_command reads from it)
#   BOOTSTRAP_TIMEOUT     seconds to wait for the primary and the base backup (default 60)
set -eu

: "${PGDATA:?PGDATA must be set}"
: "${NODE_NAME:?NODE_NAME must be set}"
: "${PRIMARY_HOST:?PRIMARY_HOST must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
: "${ARCHIVE_DIR:?ARCHIVE_DIR must be set}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
BOOTSTRAP_TIMEOUT="${BOOTSTRAP_TIMEOUT:-60}"

log() { echo "standby-bootstrap[$NODE_NAME]: $*" >&2; }
die() { log "error: $*"; exit 1; }

case "$NODE_NAME" in
    *[!a-z0-9_]*) die "NODE_NAME '$NODE_NAME' may only contain a-z, 0-9 and _" ;;
esac
case "$ARCHIVE_DIR" in
    *[!A-Za-z0-9_./-]*) die "ARCHIVE_DIR may only contain A-Z a-z 0-9 _ . / -: $ARCHIVE_DIR" ;;
esac

if [ -f "$PGDATA/PG_VERSION" ]; then
    log "$PGDATA already holds a cluster; leaving it as it is"
    exit 0
fi
if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
    die "$PGDATA is not empty but holds no cluster; refusing to overwrite it"
fi

# Values for a libpq connection string: quote, escape backslash and single quote.
conninfo_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"
}
# Values for postgresql.conf syntax: backslashes are escapes there too; double the quotes.
conf_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"
}

# The primary may still be initialising (Docker: its entrypoint's temporary server listens
# on the unix socket only) or restarting; retry until the deadline, never forever.
deadline=$(( $(date +%s) + BOOTSTRAP_TIMEOUT ))
attempt=0
while :; do
    attempt=$((attempt + 1))
    if pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -t 2 &&
        PGPASSWORD="$REPLICATION_PASSWORD" PGAPPNAME="pg_basebackup_$NODE_NAME" \
            pg_basebackup -w -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U replicator \
                -D "$PGDATA" -S "$NODE_NAME" -X stream -c fast; then
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        die "no base backup from $PRIMARY_HOST:$PRIMARY_PORT within ${BOOTSTRAP_TIMEOUT}s ($attempt attempts)"
    fi
    log "primary $PRIMARY_HOST:$PRIMARY_PORT not ready for a base backup yet; retrying"
    sleep 1
done
# postgres refuses to start on a data directory others can read.
chmod 0700 "$PGDATA"

conninfo="host=$(conninfo_quote "$PRIMARY_HOST") port=$PRIMARY_PORT user=replicator"
conninfo="$conninfo password=$(conninfo_quote "$REPLICATION_PASSWORD")"
# application_name is what pg_stat_replication shows and synchronous_standby_names matches.
conninfo="$conninfo application_name=$NODE_NAME"

# The backup carries the primary's postgresql.auto.conf. Replace the recovery settings, and
# drop synchronous_standby_names: it does nothing on a standby, and after a promotion it
# would make every commit wait for standbys that still follow the old primary. Whoever
# promotes decides the new quorum.
auto_conf="$PGDATA/postgresql.auto.conf"
{
    if [ -f "$auto_conf" ]; then
        grep -v -E '^[[:space:]]*(primary_conninfo|primary_slot_name|restore_command|synchronous_standby_names)[[:space:]]*=' "$auto_conf" || true
    fi
    echo "primary_conninfo = $(conf_quote "$conninfo")"
    echo "primary_slot_name = $(conf_quote "$NODE_NAME")"
    # Catch up from the archive when the primary no longer has the WAL (slot lost, long
    # downtime); a non-zero exit just means "not archived (yet)".
    echo "restore_command = $(conf_quote "cp $ARCHIVE_DIR/%f %p")"
} > "$auto_conf.tmp"
mv "$auto_conf.tmp" "$auto_conf"
chmod 0600 "$auto_conf"

touch "$PGDATA/standby.signal"
log "standby of $PRIMARY_HOST:$PRIMARY_PORT ready in $PGDATA (slot $NODE_NAME)"
