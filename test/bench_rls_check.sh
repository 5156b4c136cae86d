#!/bin/sh
# The per-row cost of the capture trigger's row-level security check
# (README, Whose rows): statements of 100,000 rows of a table with
# row-level security, of which the owner (alice) sees half, timed by psql,
# best of three (a fresh table each run), with a paused sync owned by
# alice, one owned by the superuser, and no sync.  Statements: INSERT,
# UPDATE of a column (half the rows hidden before and after), UPDATE
# moving every row out of alice's view, DELETE.  On a scratch cluster of
# the installed retl; run as a user that may initdb:
#   sh test/bench_rls_check.sh [directory] [port]
set -e
export PATH="$(${PG_CONFIG:-pg_config} --bindir):$PATH"
B=${1:-/tmp/retl_rls_bench}; export PGPORT=${2:-54873} PGHOST=$B PGUSER=postgres PGDATABASE=postgres
rm -rf "$B/data"; mkdir -p "$B"
initdb -D $B/data -A trust -U postgres >/dev/null
cat >> $B/data/postgresql.conf <<CONF
shared_preload_libraries = 'retl'
port = $PGPORT
unix_socket_directories = '$B'
listen_addresses = ''
retl.allow_private_destinations = on
CONF
pg_ctl -D $B/data -l $B/log -w start >/dev/null
trap "pg_ctl -D $B/data -m fast -w stop >/dev/null" EXIT
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE EXTENSION retl;
CREATE ROLE alice NOLOGIN IN ROLE retl_user;
SELECT retl_create_destination('d', 'webhook', 'http://127.0.0.1:9/');
SELECT retl_grant_destination('d', 'alice');
SQL
ms() { psql -qXAt -v ON_ERROR_STOP=1 -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'; }
for mode in alice su none; do
  for stmt in insert update update_out delete; do best=""; for run in 1 2 3; do
    psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT retl_drop_sync('s') FROM retl.syncs WHERE name = 's';
DROP TABLE IF EXISTS t;
CREATE TABLE t (id int PRIMARY KEY, tenant text NOT NULL, v text);
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON t FOR SELECT TO alice USING (tenant = 'a');
GRANT SELECT, TRIGGER ON t TO alice;
SQL
    case $mode in
      alice) psql -qX -v ON_ERROR_STOP=1 -c "SELECT retl_create_sync(name => 's', source => 't', destination => 'd', options => '{\"owner\": \"alice\", \"backfill\": false}'); SELECT retl_pause_sync('s');" >/dev/null;;
      su) psql -qX -v ON_ERROR_STOP=1 -c "SELECT retl_create_sync(name => 's', source => 't', destination => 'd', options => '{\"backfill\": false}'); SELECT retl_pause_sync('s');" >/dev/null;;
    esac
    fill="INSERT INTO t SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, 'v' FROM generate_series(1, 100000) i"
    if [ $stmt != insert ]; then psql -qX -v ON_ERROR_STOP=1 -c "$fill" -c "VACUUM ANALYZE t" >/dev/null; fi
    case $stmt in
      insert) t=$(ms "$fill");;
      update) t=$(ms "UPDATE t SET v = 'w'");;
      update_out) t=$(ms "UPDATE t SET tenant = 'c'");;
      delete) t=$(ms "DELETE FROM t");;
    esac
    if [ -z "$best" ] || [ $(echo "$t < $best" | bc) = 1 ]; then best=$t; fi
  done; echo "$mode $stmt $(echo "scale=2; $best / 100" | bc) us/row"; done
done
