#!/usr/bin/env bash
# Start, stop and inspect the real backends (PostgreSQL, Redis, Kafka) without Docker.
#
#   scripts/services.sh up     [postgres|redis|kafka]   install if missing, start, wait until ready
#   scripts/services.sh down   [postgres|redis|kafka]   stop what this script started
#   scripts/services.sh status [postgres|redis|kafka]   one line per service; exit 1 if any is down
#   scripts/services.sh env                             eval "$(scripts/services.sh env)"
#   scripts/services.sh groups [GROUP] [OPTION...]      Kafka consumer groups: partition owners, offsets, lag
#
# Everything listens on 127.0.0.1 and keeps its state in $CFD_SERVICES_DIR (default: <repo>/.services).
# PostgreSQL and Redis come from the OS packages (apt-get on Debian/Ubuntu); Kafka runs in KRaft mode
# (combined broker+controller, no ZooKeeper) from jars fetched once from Maven Central with mvn, with Kafka's
# admin tools (kafka-tools) beside them for `groups`.
#
# Settings (environment):
#   CFD_SERVICES_DIR            state directory                    <repo>/.services
#   CFD_PG_PORT                 PostgreSQL port                    5432
#   CFD_REDIS_PORT              Redis port                         6379
#   CFD_KAFKA_PORT              Kafka client port                  9092
#   CFD_KAFKA_CONTROLLER_PORT   Kafka KRaft controller port        9093
#   CFD_KAFKA_VERSION           Kafka version (Scala 2.13 build)   3.9.2
#   CFD_SERVICES_TIMEOUT        seconds to wait for each service   90
#   NO_COLOR                    set to disable colours
# shellcheck disable=SC2030,SC2031  # in_dir runs a command with another STATE_DIR in a subshell, on purpose
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${CFD_SERVICES_DIR:-$REPO_ROOT/.services}"
HOST=127.0.0.1
PG_PORT="${CFD_PG_PORT:-5432}"
REDIS_PORT="${CFD_REDIS_PORT:-6379}"
KAFKA_PORT="${CFD_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${CFD_KAFKA_CONTROLLER_PORT:-}"  # empty: see kafka_controller_port
KAFKA_VERSION="${CFD_KAFKA_VERSION:-3.9.2}"
SLF4J_VERSION=1.7.36
TIMEOUT="${CFD_SERVICES_TIMEOUT:-90}"
KAFKA_LIB="${XDG_CACHE_HOME:-$HOME/.cache}/cfd-broker/kafka-$KAFKA_VERSION/lib"
KAFKA_TOOLS_LIB="${XDG_CACHE_HOME:-$HOME/.cache}/cfd-broker/kafka-$KAFKA_VERSION/tools"
PG_USER=cfd PG_PASSWORD=cfd PG_DB=cfd
ALL_SERVICES=(postgres redis kafka)

# ---------------------------------------------------------------------------------------- output

if [[ -z "${NO_COLOR:-}" && ( -t 1 || -n "${CI:-}" ) ]]; then
  C_GREEN=$'\e[32m' C_RED=$'\e[31m' C_YELLOW=$'\e[33m' C_DIM=$'\e[2m' C_BOLD=$'\e[1m' C_OFF=$'\e[0m'
else
  C_GREEN='' C_RED='' C_YELLOW='' C_DIM='' C_BOLD='' C_OFF=''
fi

log()  { printf '%s==>%s %s\n' "$C_BOLD" "$C_OFF" "$*"; }
info() { printf '    %s%s%s\n' "$C_DIM" "$*" "$C_OFF"; }
ok()   { printf '  %sok%s   %-9s %s\n' "$C_GREEN" "$C_OFF" "$1" "${*:2}"; }
warn() { printf '  %swarn%s %-9s %s\n' "$C_YELLOW" "$C_OFF" "$1" "${*:2}"; }
# fail SERVICE WHAT [HINT]: a red status line, plus what to do about it.
fail() {
  printf '  %sFAIL%s %-9s %s\n' "$C_RED" "$C_OFF" "$1" "$2" >&2
  if [[ -n "${3:-}" ]]; then printf '       %-9s %s->%s %s\n' '' "$C_RED" "$C_OFF" "$3" >&2; fi
}
die() { printf '%serror:%s %s\n' "$C_RED" "$C_OFF" "$*" >&2; exit 1; }

# -------------------------------------------------------------------------------------- helpers

# port_open PORT: something accepts TCP connections on $HOST:PORT.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# pid_alive PIDFILE PATTERN: the pid in PIDFILE runs and its command line contains PATTERN.
pid_alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(head -n1 "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
  fi
}

# pid_running PIDFILE: the pid in PIDFILE runs, whatever it runs. Right after a launch the child may not have
# exec'd its program yet, so a wait checks this rather than pid_alive's command line.
pid_running() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(head -n1 "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# wait_for SECONDS COMMAND...: poll COMMAND twice a second until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# stop_pid PIDFILE PATTERN NAME: TERM, wait up to 60 s, then KILL.
stop_pid() {
  local pid
  pid_alive "$1" "$2" || { rm -f "$1"; return 0; }
  pid="$(head -n1 "$1")"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for 60 bash -c "! kill -0 $pid 2>/dev/null"; then
    warn "$3" "did not stop within 60 s; killing pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$1"
}

# ----------------------------------------------------------------------------- OS packages (apt)

as_admin() {
  if ((EUID == 0)); then "$@"; return; fi
  command -v sudo >/dev/null || die "installing packages needs root and there is no sudo; install them yourself"
  if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
}

# install_packages PKG...: apt-get install the given packages (apt-get update first).
# Debian/Ubuntu start a freshly installed daemon on its default port, which would then hold the port this
# script wants; a temporary policy-rc.d (the Debian mechanism for exactly this) stops that from happening.
install_packages() {
  (($#)) || return 0
  command -v apt-get >/dev/null || die "missing: $* — no apt-get here; install them with your package manager"
  log "installing OS packages: $*"
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if ! as_admin test -e "$policy"; then
    printf '#!/bin/sh\nexit 101\n' | as_admin tee "$policy" >/dev/null
    as_admin chmod 755 "$policy"
    added_policy=1
    trap 'as_admin rm -f /usr/sbin/policy-rc.d' EXIT  # also when interrupted
  fi
  local rc=0
  as_admin apt-get update -q || rc=$?
  if ((rc == 0)); then
    as_admin env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" || rc=$?
  fi
  if ((added_policy)); then as_admin rm -f "$policy"; trap - EXIT; fi
  ((rc == 0)) || die "apt-get failed (exit $rc) installing: $*"
}

# ensure_packages SERVICE...: install whatever the given services need and is missing, in one apt run.
ensure_packages() {
  local missing=() svc
  for svc in "$@"; do
    case "$svc" in
      postgres) pg_bindir >/dev/null || missing+=(postgresql) ;;
      redis) command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server) ;;
      kafka)
        java_bin >/dev/null || missing+=(default-jre-headless)
        [[ -d "$KAFKA_LIB" ]] || command -v mvn >/dev/null || missing+=(maven)
        ;;
    esac
  done
  install_packages "${missing[@]}"
}

# ------------------------------------------------------------------------------------ PostgreSQL

# pg_bindir: the directory with the server programs (initdb, pg_ctl, postgres, pg_isready, psql); the major
# version that created the data dir if that is installed, else the one on PATH, else the newest Debian one.
pg_bindir() {
  local candidates=() dir
  if [[ -f "$(pg_home)/data/PG_VERSION" ]]; then candidates+=("/usr/lib/postgresql/$(cat "$(pg_home)/data/PG_VERSION")/bin"); fi
  if command -v pg_ctl >/dev/null; then candidates+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")"); fi
  mapfile -t -O "${#candidates[@]}" candidates < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  for dir in "${candidates[@]}"; do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" && -x "$dir/pg_isready" && -x "$dir/psql" ]]; then
      echo "$dir"; return 0
    fi
  done
  return 1
}

# The server refuses to run as root, so as root the cluster belongs to the OS `postgres` user.
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# pg_home: the cluster's directory. $STATE_DIR/postgres, unless (as root) the postgres user cannot reach
# the state dir (e.g. a checkout inside root's private home); then a directory in /tmp named after it.
pg_home() {
  local home="$STATE_DIR/postgres"
  if ((EUID == 0)) && id postgres >/dev/null 2>&1 && ! (cd / && runuser -u postgres -- test -x "$STATE_DIR") 2>/dev/null; then
    home="/tmp/cfd-broker-postgres-$(printf '%s' "$STATE_DIR" | cksum | cut -d' ' -f1)"
  fi
  echo "$home"
}

pg_cfd_ok() {
  PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 "$(pg_bindir)/psql" -X -q -w -At \
    -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -c 'select 1' >/dev/null 2>&1
}

pg_running_ours() { [[ -f "$(pg_home)/data/postmaster.pid" ]] && as_pg "$(pg_bindir)/pg_ctl" -D "$(pg_home)/data" status >/dev/null 2>&1; }

# pg_init: a new cluster with the cfd role and database, built aside and moved into place when complete.
pg_init() {
  local home="$1" bin="$2" tmp="$1/data.new"
  info "creating a PostgreSQL cluster in $home/data"
  rm -rf "$tmp"
  as_pg "$bin/initdb" -D "$tmp" -U postgres --encoding=UTF8 --locale=C \
    --auth-local=peer --auth-host=scram-sha-256 >"$home/initdb.log" 2>&1 \
    || { tail -n 20 "$home/initdb.log" >&2; return 1; }
  # TCP on 127.0.0.1 only, no Unix socket (so no clash with a distro cluster's socket directory).
  as_pg tee -a "$tmp/postgresql.conf" >/dev/null <<EOF

# cfd-broker dev/CI cluster (scripts/services.sh); the port is given on the command line
listen_addresses = '$HOST'
unix_socket_directories = ''
max_connections = 200
EOF
  # Single-user mode needs no authentication or listener: the simplest way to bootstrap.
  if ! as_pg "$bin/postgres" --single -D "$tmp" postgres >"$home/bootstrap.log" 2>&1 <<EOF
CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
CREATE DATABASE $PG_DB OWNER $PG_USER;
EOF
  then
    cat "$home/bootstrap.log" >&2; return 1
  fi
  if grep -q 'ERROR:' "$home/bootstrap.log"; then cat "$home/bootstrap.log" >&2; return 1; fi
  mv "$tmp" "$home/data"
}

postgres_up() {
  local bin home
  bin="$(pg_bindir)" || { fail postgres "PostgreSQL is not installed" "apt-get install postgresql"; return 1; }
  home="$(pg_home)"
  if pg_running_ours; then
    if pg_cfd_ok; then ok postgres "already running on $HOST:$PG_PORT"; return 0; fi
    fail postgres "the cluster in $home runs, but $PG_USER cannot connect on $HOST:$PG_PORT" \
      "restart it (a changed CFD_PG_PORT?): scripts/services.sh down postgres; scripts/services.sh up postgres"
    return 1
  elif port_open "$PG_PORT"; then
    if pg_cfd_ok; then
      ok postgres "$HOST:$PG_PORT is served by another PostgreSQL that accepts $PG_USER/$PG_PASSWORD; using it"
      return 0
    fi
    fail postgres "port $PG_PORT is taken by something that does not accept $PG_USER/$PG_PASSWORD" \
      "stop it (a distro cluster: pg_lsclusters, then pg_ctlcluster <ver> <name> stop) or set CFD_PG_PORT"
    return 1
  fi

  mkdir -p "$home"
  if ((EUID == 0)); then chown postgres: "$home"; fi
  chmod 700 "$home"
  if [[ ! -f "$home/data/PG_VERSION" ]]; then
    pg_init "$home" "$bin" || { fail postgres "could not create the cluster" "see $home/initdb.log"; return 1; }
  fi
  if ! pg_running_ours; then
    as_pg "$bin/pg_ctl" -D "$home/data" -l "$home/postgres.log" -o "-p $PG_PORT" -w -t "$TIMEOUT" start >/dev/null \
      || { tail -n 20 "$home/postgres.log" >&2; fail postgres "did not start" "see $home/postgres.log"; return 1; }
  fi
  if ! wait_for "$TIMEOUT" "$bin/pg_isready" -q -h "$HOST" -p "$PG_PORT"; then
    fail postgres "not accepting connections on $HOST:$PG_PORT" "see $home/postgres.log"; return 1
  fi
  if ! pg_cfd_ok; then
    fail postgres "running, but $PG_USER/$PG_PASSWORD cannot connect to database $PG_DB" \
      "the cluster in $home is not ours: scripts/services.sh down postgres; rm -rf $home"
    return 1
  fi
  ok postgres "ready on $HOST:$PG_PORT (database $PG_DB, user $PG_USER)"
}

postgres_down() {
  local bin home
  home="$(pg_home)"
  if bin="$(pg_bindir)" && pg_running_ours; then
    as_pg "$bin/pg_ctl" -D "$home/data" -m fast -w -t 60 stop >/dev/null
    ok postgres "stopped"
  elif port_open "$PG_PORT"; then
    warn postgres "port $PG_PORT is served by a PostgreSQL this script did not start; left alone"
  else
    ok postgres "not running"
  fi
}

postgres_status() {
  if pg_bindir >/dev/null && pg_cfd_ok; then
    if pg_running_ours; then ok postgres "up    $HOST:$PG_PORT  $(pg_home)/data"
    else ok postgres "up    $HOST:$PG_PORT  (not started by this script)"; fi
  else
    fail postgres "down  $HOST:$PG_PORT" "scripts/services.sh up postgres"; return 1
  fi
}

# ----------------------------------------------------------------------------------------- Redis

redis_ping() { [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

redis_up() {
  local dir="$STATE_DIR/redis"
  command -v redis-server >/dev/null || { fail redis "redis-server is not installed" "apt-get install redis-server"; return 1; }
  if redis_ping; then
    if redis_running_ours; then ok redis "already running on $HOST:$REDIS_PORT"
    else warn redis "$HOST:$REDIS_PORT is served by a Redis this script did not start; using it"; fi
    return 0
  fi
  if port_open "$REDIS_PORT"; then
    fail redis "port $REDIS_PORT is taken by something that is not Redis" "free it or set CFD_REDIS_PORT"
    return 1
  fi
  mkdir -p "$dir"
  # An in-memory cache: no RDB snapshots, no AOF.
  redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --dir "$dir" \
    --save '' --appendonly no --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    || { fail redis "redis-server failed to start" "see $dir/redis.log"; return 1; }
  if ! wait_for "$TIMEOUT" redis_ping; then
    tail -n 20 "$dir/redis.log" >&2 || true
    fail redis "no PONG from $HOST:$REDIS_PORT" "see $dir/redis.log"; return 1
  fi
  ok redis "ready on $HOST:$REDIS_PORT"
}

redis_down() {
  local dir="$STATE_DIR/redis"
  if redis_running_ours; then
    redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    stop_pid "$dir/redis.pid" redis-server redis
    ok redis "stopped"
  elif redis_ping; then
    warn redis "$HOST:$REDIS_PORT is served by a Redis this script did not start; left alone"
  else
    rm -f "$dir/redis.pid"
    ok redis "not running"
  fi
}

redis_status() {
  if command -v redis-cli >/dev/null && redis_ping; then
    if redis_running_ours; then ok redis "up    $HOST:$REDIS_PORT  $STATE_DIR/redis"
    else ok redis "up    $HOST:$REDIS_PORT  (not started by this script)"; fi
  else
    fail redis "down  $HOST:$REDIS_PORT" "scripts/services.sh up redis"; return 1
  fi
}

# ----------------------------------------------------------------------------------------- Kafka

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then echo "$JAVA_HOME/bin/java"
  else command -v java; fi
}

kafka_java() {
  "$(java_bin)" -Dlog4j.configuration="file:$STATE_DIR/kafka/log4j.properties" -cp "$KAFKA_LIB/*" "$@"
}

# maven_fetch WHAT DIR DEPENDENCIES: copy the runtime jars of the given <dependency> elements from Maven
# Central into DIR (built aside in DIR.partial, moved into place when complete), with progress lines.
maven_fetch() {
  local what="$1" dir="$2" dependencies="$3"
  command -v mvn >/dev/null || { fail kafka "mvn is not installed" "apt-get install maven"; return 1; }
  local work; work="$(mktemp -d)"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cfd-broker</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
$dependencies
  </dependencies>
</project>
EOF
  log "downloading $what from Maven Central (first run only)"
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir.partial"
  (cd "$work" && mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dir.partial") >"$work/mvn.log" 2>&1 &
  local mvn_pid=$! start=$SECONDS rc=0
  while kill -0 "$mvn_pid" 2>/dev/null; do
    sleep 1
    if (((SECONDS - start) % 5 == 0)); then
      info "still downloading ($((SECONDS - start)) s, $(du -sm "$HOME/.m2/repository" 2>/dev/null | cut -f1 || echo '?') MB in the Maven cache)"
    fi
  done
  wait "$mvn_pid" || rc=$?
  if ((rc != 0)) || ! compgen -G "$dir.partial/*.jar" >/dev/null; then
    tail -n 30 "$work/mvn.log" >&2
    rm -rf "$work" "$dir.partial"
    fail kafka "could not download $what" "check access to Maven Central (or ~/.m2/settings.xml mirrors)"
    return 1
  fi
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
  rm -rf "$work"
  local jars=("$dir"/*.jar)
  info "${#jars[@]} jars in $dir ($((SECONDS - start)) s)"
}

# kafka_fetch: Kafka's runtime jars (about 50 MB), once, into the user's cache.
kafka_fetch() {
  [[ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ]] && return 0
  maven_fetch "Kafka $KAFKA_VERSION jars" "$KAFKA_LIB" "\
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>$SLF4J_VERSION</version></dependency>"
}

# kafka_tools_fetch: Kafka's admin tools (the kafka-tools artifact: the consumer-group command and others),
# once, into a folder of their own, so their dependencies never mix with the broker's. Kafka Connect's
# runtime, which kafka-tools also pulls in, is left out: no tool used here needs it.
kafka_tools_fetch() {
  [[ -f "$KAFKA_TOOLS_LIB/kafka-tools-$KAFKA_VERSION.jar" ]] && return 0
  maven_fetch "Kafka $KAFKA_VERSION admin tools" "$KAFKA_TOOLS_LIB" "\
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>
    </dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>$SLF4J_VERSION</version></dependency>"
}

# kafka_tool CLASS ARG...: run one of Kafka's admin tools; its own log goes to stderr, warnings only.
kafka_tool() {
  local config="$KAFKA_TOOLS_LIB/../tools-log4j.properties"
  [[ -f "$config" ]] || printf '%s\n' 'log4j.rootLogger=WARN, stderr' \
    'log4j.appender.stderr=org.apache.log4j.ConsoleAppender' 'log4j.appender.stderr.Target=System.err' \
    'log4j.appender.stderr.layout=org.apache.log4j.PatternLayout' \
    'log4j.appender.stderr.layout.ConversionPattern=%p %m (%c)%n' >"$config"
  "$(java_bin)" -Xmx256m -Dlog4j.configuration="file:$config" -cp "$KAFKA_TOOLS_LIB/*" "$@"
}

# kafka_controller_port: CFD_KAFKA_CONTROLLER_PORT, else the port this Kafka was last configured with (so a
# restart by someone who did not set the variable keeps it), else 9093.
kafka_controller_port() {
  if [[ -n "$KAFKA_CONTROLLER_PORT" ]]; then echo "$KAFKA_CONTROLLER_PORT"; return; fi
  local used
  used="$(sed -n 's/^controller\.quorum\.voters=1@.*:\([0-9][0-9]*\)$/\1/p' "$STATE_DIR/kafka/server.properties" 2>/dev/null)"
  echo "${used:-9093}"
}

kafka_write_config() {
  local dir="$STATE_DIR/kafka" controller_port
  controller_port="$(kafka_controller_port)"
  mkdir -p "$dir/logs"
  cat >"$dir/server.properties" <<EOF
# Single-node Kafka in KRaft mode for development and CI; written by scripts/services.sh on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$controller_port
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$controller_port
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$dir/logs/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
}

kafka_running_ours() { pid_alive "$STATE_DIR/kafka/kafka.pid" kafka.Kafka; }
kafka_started() { grep -q 'Kafka Server started' "$STATE_DIR/kafka/logs/server.log" 2>/dev/null; }

kafka_log_tail() {
  local dir="$STATE_DIR/kafka"
  tail -n 25 "$dir/logs/server.log" 2>/dev/null >&2 || true
  tail -n 10 "$dir/logs/kafka.out" 2>/dev/null >&2 || true
}

# kafka_launch: start the broker in the background (0) or report it running already (2); kafka_wait waits.
kafka_launch() {
  local dir="$STATE_DIR/kafka"
  if kafka_running_ours; then return 2; fi
  if port_open "$KAFKA_PORT"; then return 2; fi
  java_bin >/dev/null || { fail kafka "java is not installed" "apt-get install default-jre-headless"; return 1; }
  kafka_fetch || return 1
  kafka_tools_fetch || warn kafka "Kafka's admin tools were not downloaded; scripts/services.sh groups tries again"
  kafka_write_config
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$dir/logs/format.log")"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
      >>"$dir/logs/format.log" 2>&1 \
      || { tail -n 20 "$dir/logs/format.log" >&2; fail kafka "storage format failed" "see $dir/logs/format.log"; return 1; }
    info "formatted Kafka storage (cluster id $cluster_id)"
  fi
  # A fresh log per start, so readiness is judged on this run's lines only.
  if [[ -f "$dir/logs/server.log" ]]; then mv -f "$dir/logs/server.log" "$dir/logs/server.previous.log"; fi
  nohup setsid "$(java_bin)" -Xmx512m -Dlog4j.configuration="file:$dir/log4j.properties" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties" >"$dir/logs/kafka.out" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
}

kafka_wait() {
  local dir="$STATE_DIR/kafka" deadline=$((SECONDS + TIMEOUT))
  until kafka_started && port_open "$KAFKA_PORT"; do
    if ! pid_running "$dir/kafka.pid"; then
      kafka_log_tail
      fail kafka "the broker exited during startup" "see $dir/logs/server.log"; return 1
    fi
    if ((SECONDS >= deadline)); then
      kafka_log_tail
      fail kafka "not started after ${TIMEOUT} s" "see $dir/logs/server.log"; return 1
    fi
    sleep 0.5
  done
  ok kafka "ready on $HOST:$KAFKA_PORT (KRaft, controller on :$(kafka_controller_port))"
}

kafka_report_running() {
  if kafka_running_ours; then ok kafka "already running on $HOST:$KAFKA_PORT"
  else warn kafka "$HOST:$KAFKA_PORT is served by a process this script did not start; using it"; fi
}

kafka_down() {
  local dir="$STATE_DIR/kafka"
  if kafka_running_ours; then
    stop_pid "$dir/kafka.pid" kafka.Kafka kafka
    ok kafka "stopped"
  elif port_open "$KAFKA_PORT"; then
    warn kafka "$HOST:$KAFKA_PORT is served by a process this script did not start; left alone"
  else
    rm -f "$dir/kafka.pid"
    ok kafka "not running"
  fi
}

kafka_status() {
  if port_open "$KAFKA_PORT"; then
    if kafka_running_ours; then ok kafka "up    $HOST:$KAFKA_PORT  $STATE_DIR/kafka (pid $(cat "$STATE_DIR/kafka/kafka.pid"))"
    else ok kafka "up    $HOST:$KAFKA_PORT  (not started by this script)"; fi
  else
    fail kafka "down  $HOST:$KAFKA_PORT" "scripts/services.sh up kafka"; return 1
  fi
}

# ------------------------------------------------------------------------------ who owns a port

# One set of services per port and machine, whichever checkout started it: each start is recorded in
# $REGISTRY/<service>-<port> (the state dir), so a second checkout (say, CI's fresh clone next to a
# developer's tree) reuses, reports on and stops those services as if it had started them itself.
REGISTRY="/tmp/cfd-broker-services-$(id -u)"

svc_port() {
  case "$1" in postgres) echo "$PG_PORT" ;; redis) echo "$REDIS_PORT" ;; kafka) echo "$KAFKA_PORT" ;; esac
}

redis_running_ours() { pid_alive "$STATE_DIR/redis/redis.pid" redis-server; }
postgres_running_ours() { pg_running_ours; }

# in_dir DIR COMMAND...: run COMMAND with DIR as the state dir.
in_dir() { (STATE_DIR="$1"; shift; "$@"); }

# owner_dir SERVICE: the state dir of the running SERVICE on its port: another checkout's if that one
# started it, else ours.
owner_dir() {
  local other
  if ! "${1}_running_ours" 2>/dev/null \
    && other="$(cat "$REGISTRY/$1-$(svc_port "$1")" 2>/dev/null)" \
    && [[ -n "$other" && "$other" != "$STATE_DIR" && -d "$other" ]] \
    && in_dir "$other" "${1}_running_ours" 2>/dev/null; then
    echo "$other"
  else
    echo "$STATE_DIR"
  fi
}

# remember_owner SERVICE DIR: record DIR as the owner of SERVICE's port if it runs there; forget otherwise.
remember_owner() {
  local file; file="$REGISTRY/$1-$(svc_port "$1")"
  if in_dir "$2" "${1}_running_ours" 2>/dev/null; then
    mkdir -p "$REGISTRY" && echo "$2" >"$file"
  elif [[ "$(cat "$file" 2>/dev/null)" == "$2" ]]; then
    rm -f "$file"
  fi
}

# -------------------------------------------------------------------------------------- commands

absolute_state_dir() { if [[ -d "$STATE_DIR" ]]; then STATE_DIR="$(cd "$STATE_DIR" && pwd)"; fi; }

# for_each ACTION SERVICE...: run <service>_<action> in each service's owner dir; fail if any fails.
for_each() {
  local action="$1" svc dir failed=0; shift
  absolute_state_dir
  for svc in "$@"; do
    dir="$(owner_dir "$svc")"
    [[ "$dir" == "$STATE_DIR" ]] || info "$svc was started from $dir"
    in_dir "$dir" "${svc}_${action}" || failed=1
    [[ "$action" == status ]] || remember_owner "$svc" "$dir"
  done
  return "$failed"
}

cmd_up() {
  local started=$SECONDS failed=0 svc kafka_rc=-1 kafka_dir
  mkdir -p "$STATE_DIR"
  absolute_state_dir
  ensure_packages "$@"
  # Kafka's JVM takes the longest to start: launch it first, start the others meanwhile, then wait for it.
  if [[ " $* " == *" kafka "* ]]; then
    kafka_dir="$(owner_dir kafka)"
    kafka_rc=0; in_dir "$kafka_dir" kafka_launch || kafka_rc=$?
  fi
  for svc in "$@"; do
    if [[ "$svc" != kafka ]]; then for_each up "$svc" || failed=1; continue; fi
    [[ "$kafka_dir" == "$STATE_DIR" ]] || info "kafka was started from $kafka_dir"
    case $kafka_rc in
      0) in_dir "$kafka_dir" kafka_wait || failed=1 ;;
      2) in_dir "$kafka_dir" kafka_report_running ;;
      *) failed=1 ;;
    esac
    remember_owner kafka "$kafka_dir"
  done
  if ((failed)); then
    printf '%sservices not all up%s (%d s); state in %s\n' "$C_RED" "$C_OFF" $((SECONDS - started)) "$STATE_DIR" >&2
    return 1
  fi
  # shellcheck disable=SC2016  # the $(...) is meant literally
  printf '%sservices up%s in %d s — use them with: eval "$(scripts/services.sh env)"\n' \
    "$C_GREEN" "$C_OFF" $((SECONDS - started))
}

cmd_down() { for_each down "$@"; }
cmd_status() { for_each status "$@"; }

# cmd_groups [GROUP] [OPTION...]: Kafka's consumer-group command against this Kafka. It describes GROUP (or
# every group): per partition the committed offset, the log end, the lag and the member that owns it (whose
# client id is cfd-<instance id>). Options go to the tool: --members, --state, --offsets; --list lists the
# groups instead.
cmd_groups() {
  local target=(--all-groups) options
  if [[ $# -gt 0 && "$1" != -* ]]; then target=(--group "$1"); shift; fi
  port_open "$KAFKA_PORT" || die "no Kafka on $HOST:$KAFKA_PORT; start it: scripts/services.sh up kafka"
  kafka_tools_fetch || exit 1
  if [[ " $* " == *" --list "* ]]; then options=(--list)
  else options=(--describe "${target[@]}" "$@"); fi
  kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
    "${options[@]}"
}

cmd_env() {
  echo "export CFD_DATABASE_URL=postgresql://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB"
  echo "export CFD_REDIS_URL=redis://$HOST:$REDIS_PORT/0"
  echo "export CFD_KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT"
}

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  if [[ "$cmd" == groups ]]; then cmd_groups "$@"; return; fi
  local services=("$@")
  ((${#services[@]})) || services=("${ALL_SERVICES[@]}")
  local svc
  for svc in "${services[@]}"; do
    [[ " ${ALL_SERVICES[*]} " == *" $svc "* ]] || die "unknown service '$svc' (expected: ${ALL_SERVICES[*]})"
  done
  case "$cmd" in
    up) cmd_up "${services[@]}" ;;
    down) cmd_down "${services[@]}" ;;
    status) cmd_status "${services[@]}" ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
