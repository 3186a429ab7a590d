#!/usr/bin/env bash
# rabbitmq-cluster.sh: a throw-away RabbitMQ 3.10 cluster on loopback, for
# tests (testkit's `cluster` module drives it; it also works by hand). It
# never touches the broker already running on the machine (rabbit@localhost,
# 5672): own node names, ports, directories, configuration and cookie.
#
#   rabbitmq-cluster.sh start              wipe $BASE, start every node, join them to t1, wait
#   rabbitmq-cluster.sh kill tN            SIGKILL node tN by the pid in its own pid file
#   rabbitmq-cluster.sh start-node tN      start tN again, keeping its data (it rejoins by itself)
#   rabbitmq-cluster.sh pid tN             the node's beam.smp pid (empty when it is down)
#   rabbitmq-cluster.sh ctl tN ARGS...     rabbitmqctl -n <tN's name> ARGS (also: queues, diag)
#   rabbitmq-cluster.sh status             each node's name, ports and pid; the cluster's members
#   rabbitmq-cluster.sh destroy            SIGKILL every node (own pids only), delete $BASE
#
# Environment (give every command the same):
#   RABBIT_CLUSTER_BASE       everything lives here: data, logs, pid files, the
#                             cookie (default /tmp/audrey-rabbit-cluster)
#   RABBIT_CLUSTER_NAME       node names are NAME-t1@localhost, ... (default audrey)
#   RABBIT_CLUSTER_PORT       AMQP port of t1; tN listens on PORT+N-1 and its
#                             Erlang distribution on PORT+N-1+20000 (default 5701)
#   RABBIT_CLUSTER_NODES      how many nodes (default 3)
#   RABBIT_CLUSTER_COOKIE     the Erlang cookie (default: a random one per $BASE)
#   RABBIT_CLUSTER_OWNER_PID  with `start`: when this process is gone, a watchdog
#                             SIGKILLs the nodes and deletes $BASE (a test that
#                             died without cleaning up leaves nothing running)
# AMQP URLs: amqp://guest:guest@127.0.0.1:<port>/%2f (guest may log in: loopback).
#
# How the nodes are kept apart from the machine's broker:
#   * RABBITMQ_CONF_ENV_FILE points at an empty file of ours: the system's
#     /etc/rabbitmq/rabbitmq-env.conf (its NODENAME, ERL_FLAGS) is not read;
#     each node gets its name, ports, rabbitmq.conf, an empty plugin list and
#     its mnesia, log and pid file under $BASE/tN.
#   * The CLI is always called with -n: without it, rabbitmqctl would talk to
#     the machine's broker (`stop_app` would stop it).
#   * The Erlang cookie is our own, in $BASE/home/.erlang.cookie, and HOME
#     points there for the servers and for the CLI (both read
#     $HOME/.erlang.cookie): the machine's broker cannot even talk to them.
#   * epmd (127.0.0.1:4369) is shared: each node registers its own name there.
#     Never kill epmd; node names must differ from the broker's.
#   * Nodes are only ever killed by the pid RabbitMQ wrote to their pid file,
#     after checking that it is a beam process (never pkill/killall: that
#     would take the machine's broker down too).
# Timings on 2 cores: three nodes boot in parallel in 17-22 s, joining takes
# 8-11 s more; a killed node restarts and rejoins in 9-11 s.
# Needs rabbitmq-server 3.10 under /usr/lib/rabbitmq (the Debian package).
set -euo pipefail

BASE=${RABBIT_CLUSTER_BASE:-/tmp/audrey-rabbit-cluster}
NAME=${RABBIT_CLUSTER_NAME:-audrey}
PORT0=${RABBIT_CLUSTER_PORT:-5701}
COUNT=${RABBIT_CLUSTER_NODES:-3}
SBIN=/usr/lib/rabbitmq/bin
NODES=()
for ((i = 1; i <= COUNT; i++)); do NODES+=("t$i"); done

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

short() { # t2 | 2 | NAME-t2@localhost  ->  t2
  local n=${1%%@*}
  n=${n#"$NAME"-}
  [[ $n =~ ^[0-9]+$ ]] && n=t$n
  [[ " ${NODES[*]} " == *" $n "* ]] || { echo "unknown node: $1" >&2; exit 2; }
  echo "$n"
}
nodename() { echo "$NAME-$1@localhost"; }
amqp_port() { echo $((PORT0 + ${1#t} - 1)); }
dist_port() { echo $(($(amqp_port "$1") + 20000)); }
pidfile() { echo "$BASE/$1/pid"; }

# The CLI's environment: our cookie, not the system's env file.
cli() {
  local tool=$1 n
  n=$(short "$2")
  shift 2
  (
    unset ERL_FLAGS RABBITMQ_NODENAME RABBITMQ_ENV_LOADED
    export HOME="$BASE/home" RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"
    "$SBIN/$tool" -n "$(nodename "$n")" "$@"
  )
}

os_pid() { local f; f=$(pidfile "$1"); if [[ -s $f ]]; then tr -dc 0-9 < "$f"; fi; }
is_beam() { [[ -n $1 ]] && grep -qs beam "/proc/$1/comm"; }
alive() { is_beam "$(os_pid "$1")"; }

prepare_base() {
  mkdir -p "$BASE/home"
  : > "$BASE/rabbitmq-env.conf"
  local cookie=${RABBIT_CLUSTER_COOKIE:-}
  if [[ -z $cookie ]]; then
    cookie=$(head -c 64 /dev/urandom | od -An -tx1 | tr -dc 0-9a-f | tr a-f A-F | head -c 32)
  fi
  rm -f "$BASE/home/.erlang.cookie"
  printf %s "$cookie" > "$BASE/home/.erlang.cookie"
  chmod 400 "$BASE/home/.erlang.cookie"
}

write_node_files() {
  local n=$1 d="$BASE/$1"
  mkdir -p "$d/mnesia" "$d/log"
  echo '[].' > "$d/enabled_plugins"
  cat > "$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$(amqp_port "$n")
log.file.level = info
log.console = false
EOF
}

launch() { # starts one node in the background, in a session of its own
  local n=$1 d="$BASE/$1"
  [[ -f $d/rabbitmq.conf ]] || write_node_files "$n"
  if alive "$n"; then echo "$n already runs (pid $(os_pid "$n"))"; return; fi
  rm -f "$(pidfile "$n")"
  (
    cd "$d"
    env -u ERL_FLAGS -u RABBITMQ_NODENAME -u RABBITMQ_ENV_LOADED \
      HOME="$BASE/home" \
      RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf" \
      RABBITMQ_NODENAME="$(nodename "$n")" \
      RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
      RABBITMQ_DIST_PORT="$(dist_port "$n")" \
      RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
      RABBITMQ_MNESIA_BASE="$d/mnesia" \
      RABBITMQ_LOG_BASE="$d/log" \
      RABBITMQ_PID_FILE="$(pidfile "$n")" \
      ERL_EPMD_ADDRESS=127.0.0.1 \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
      setsid "$SBIN/rabbitmq-server" > "$d/log/stdout.log" 2>&1 < /dev/null &
  )
}

wait_node() { # until the pid file exists and the rabbit application runs
  if ! cli rabbitmqctl "$1" wait --timeout "${2:-120}" "$(pidfile "$1")" > /dev/null; then
    echo "$1 did not start; the end of its log:" >&2
    tail -n 30 "$BASE/$1/log/stdout.log" >&2 || true
    return 1
  fi
}

kill_node() { # SIGKILL by its own pid, then wait until it is gone
  local n=$1 p
  p=$(os_pid "$n")
  is_beam "$p" || return 0
  kill -9 "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
  echo "$n: pid $p still there after SIGKILL" >&2
}

watchdog() { # kills the nodes and deletes $BASE once $1 is gone
  local owner=$1
  (
    trap '' HUP
    while kill -0 "$owner" 2>/dev/null && [[ -d $BASE ]]; do sleep 1; done
    if [[ -d $BASE ]]; then
      for n in "${NODES[@]}"; do kill_node "$n"; done
      rm -rf "$BASE"
    fi
  ) > /dev/null 2>&1 < /dev/null &
}

cmd_start() {
  if [[ -d $BASE ]]; then cmd_destroy; fi
  prepare_base
  local t0 t1
  t0=$(now)
  for n in "${NODES[@]}"; do write_node_files "$n"; launch "$n"; done
  if [[ -n ${RABBIT_CLUSTER_OWNER_PID:-} ]]; then watchdog "$RABBIT_CLUSTER_OWNER_PID"; fi
  for n in "${NODES[@]}"; do wait_node "$n"; done
  t1=$(now)
  echo "nodes booted in $(since "$t0") s"
  for n in "${NODES[@]:1}"; do
    cli rabbitmqctl "$n" stop_app > /dev/null
    cli rabbitmqctl "$n" join_cluster "$(nodename t1)" > /dev/null
    cli rabbitmqctl "$n" start_app > /dev/null
  done
  cli rabbitmqctl t1 await_online_nodes "$COUNT" --timeout 60 > /dev/null
  echo "cluster of $COUNT formed in $(since "$t1") s more ($(since "$t0") s in all)"
}

cmd_status() {
  for n in "${NODES[@]}"; do
    local s=down
    if alive "$n"; then s="up pid=$(os_pid "$n")"; fi
    printf '%s %s amqp=127.0.0.1:%s dist=%s %s\n' "$n" "$(nodename "$n")" "$(amqp_port "$n")" "$(dist_port "$n")" "$s"
  done
  for n in "${NODES[@]}"; do
    if alive "$n"; then cli rabbitmqctl "$n" cluster_status; return; fi
  done
}

cmd_destroy() {
  for n in "${NODES[@]}"; do kill_node "$n"; done
  rm -rf "$BASE"
}

case ${1:-} in
  start) cmd_start ;;
  kill) kill_node "$(short "${2:?node}")" ;;
  start-node)
    n=$(short "${2:?node}")
    launch "$n"
    wait_node "$n"
    ;;
  pid)
    n=$(short "${2:?node}")
    if alive "$n"; then os_pid "$n"; echo; fi
    ;;
  ctl) shift; cli rabbitmqctl "$@" ;;
  queues) shift; cli rabbitmq-queues "$@" ;;
  diag) shift; cli rabbitmq-diagnostics "$@" ;;
  status) cmd_status ;;
  destroy) cmd_destroy ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
