#!/usr/bin/env bash
# Entry point of the ringi-postgres image (compose.ha.yaml): one PostgreSQL
# 15 cluster shared by the coordinators.
#
# /run/ringi-postgres (read-only volume, written by `setup` with
#   RINGI_POSTGRES=1): server.pem and server.key (a certificate for the name
#   `postgres` from the stack's development CA) and password (the `ringi`
#   role's password; the coordinators read the same one from their secrets).
# /var/lib/postgresql/data (volume): the cluster, made on first start with
#   the `ringi` role and database.
#
# The server takes TLS connections only (pg_hba: hostssl, SCRAM), for the
# ringi database and role only; the superuser logs in over the local socket.
set -euo pipefail

bin=/usr/lib/postgresql/15/bin
in=/run/ringi-postgres
data=/var/lib/postgresql/data
pgdata=$data/cluster
tls=/var/lib/postgresql/tls

log() { printf 'ringi-postgres: %s\n' "$*" >&2; }
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

for file in server.pem server.key password; do
  for ((i = 0; i < 600; i++)); do [ -s "$in/$file" ] && break; sleep 0.5; done
  [ -s "$in/$file" ] || { log "no $in/$file from setup"; exit 1; }
done

# The key must belong to the server's user, mode 600 (PostgreSQL refuses it
# otherwise); copied out of setup's volume at every start.
install -d -o postgres -g postgres -m 700 "$tls"
install -o postgres -g postgres -m 600 "$in/server.key" "$tls/server.key"
install -o postgres -g postgres -m 644 "$in/server.pem" "$tls/server.pem"
chown postgres:postgres "$data"
chmod 700 "$data"

if [ ! -s "$pgdata/PG_VERSION" ]; then
  log "first start: initialising the cluster"
  rm -rf "$pgdata"
  as_postgres "$bin/initdb" -D "$pgdata" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=reject >/dev/null
  cat > "$pgdata/pg_hba.conf" <<HBA
# ringi-postgres: the superuser over the local socket; the coordinators
# (role ringi, database ringi) over TLS with a password; nothing else.
local   all     postgres                peer
hostssl ringi   ringi    0.0.0.0/0      scram-sha-256
hostssl ringi   ringi    ::/0           scram-sha-256
HBA
  chown postgres:postgres "$pgdata/pg_hba.conf"
  as_postgres "$bin/pg_ctl" -D "$pgdata" -o "-c listen_addresses='' -c unix_socket_directories=/tmp" -w start >/dev/null
  # The password goes to psql on stdin, never on a command line.
  printf "CREATE ROLE ringi LOGIN PASSWORD '%s';\nCREATE DATABASE ringi OWNER ringi;\n" "$(cat "$in/password")" \
    | as_postgres "$bin/psql" -h /tmp -U postgres -d postgres -q -v ON_ERROR_STOP=1
  as_postgres "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
  log "cluster ready: database ringi, role ringi"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$pgdata" \
  -c listen_addresses='*' -c unix_socket_directories=/tmp \
  -c ssl=on -c ssl_cert_file="$tls/server.pem" -c ssl_key_file="$tls/server.key" \
  -c ssl_min_protocol_version=TLSv1.2 -c password_encryption=scram-sha-256 \
  -c max_connections=100 -c log_connections=off
