#!/bin/bash
# A RabbitMQ node of the environment's broker group (issue 18), from Debian 12's packages: rabbitmq-server 3.10
# (with rabbitmq_peer_discovery_aws) and awscli. Run as root by the host's UserData (docs/aws.md, "Broker hosts").
#
# Exits 0 only when this node runs, is one of a cluster of EF_NODE_COUNT running nodes, and the administrator of
# the stack's secret exists (and authenticates) with guest gone; otherwise non-zero with one line
# "rabbitmq-node: <cause>" on stderr. No secret is ever printed, put on a command line or exported.
#
# Environment (the contract between the issue-18 scripts):
#   EF_REGION             the stack's region
#   EF_ADMIN_SECRET_ARN   Secrets Manager secret, JSON {"username": ..., "password": ...}
#   EF_COOKIE_SECRET_ARN  Secrets Manager secret whose string is the Erlang cookie
#   EF_NODE_COUNT         how many running nodes the cluster must have
#   EF_DISCOVERY          aws (default): rabbit_peer_discovery_aws over this instance's auto-scaling group;
#                         static:rabbit@a,rabbit@b,...: classic_config with these node names
#   EF_AWS_ENDPOINT_URL   optional: `aws --endpoint-url` (a moto server, in tests)
# Knobs of this script, production defaults (a test runs several nodes on one machine with them):
#   EF_NODE_NAME          default: aws: rabbit@<private IPv4> (long names, as use_private_ip makes discovery
#                         return); static: rabbit@<short hostname>
#   EF_LISTEN_ADDRESS     put every listener (AMQP, management, distribution, epmd) on this IPv4; default: all
#   EF_AMQP_PORT (5672), EF_MANAGEMENT_PORT (15672), EF_DIST_PORT (25672), EF_EPMD_PORT (4369)
#   EF_CONFIG_DIR (/etc/rabbitmq), EF_DATA_DIR (/var/lib/rabbitmq/mnesia), EF_LOG_DIR (/var/log/rabbitmq)
#   EF_START              systemd (default when systemd runs) or background (a process of its own session)
#   EF_WAIT_SECONDS       how long the node may take to start and the cluster to form (default 600)
set -euo pipefail
umask 022

die() {
  echo "rabbitmq-node: $*" >&2
  exit 1
}
# Anything that fails without its own message: one line naming the command (as written: never a value).
failed() {
  echo "rabbitmq-node: line $2: \"$3\" exited $1" >&2
}
trap 'failed $? $LINENO "$BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || die "run as root"
for var in EF_REGION EF_ADMIN_SECRET_ARN EF_COOKIE_SECRET_ARN EF_NODE_COUNT; do
  [ -n "${!var:-}" ] || die "$var is not set"
done
[[ $EF_NODE_COUNT =~ ^[1-9][0-9]*$ ]] || die "EF_NODE_COUNT is not a positive number: $EF_NODE_COUNT"
discovery=${EF_DISCOVERY:-aws}
case $discovery in
  aws) ;;
  static:?*) ;;
  *) die "EF_DISCOVERY is neither aws nor static:rabbit@a,rabbit@b,...: $discovery" ;;
esac
amqp_port=${EF_AMQP_PORT:-5672}
management_port=${EF_MANAGEMENT_PORT:-15672}
dist_port=${EF_DIST_PORT:-25672}
epmd_port=${EF_EPMD_PORT:-4369}
listen=${EF_LISTEN_ADDRESS:-}
conf_dir=${EF_CONFIG_DIR:-/etc/rabbitmq}
data_dir=${EF_DATA_DIR:-/var/lib/rabbitmq/mnesia}
log_dir=${EF_LOG_DIR:-/var/log/rabbitmq}
wait_seconds=${EF_WAIT_SECONDS:-600}
for var in amqp_port management_port dist_port epmd_port wait_seconds; do
  [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "${var} is not a positive number: ${!var}"
done
[ -z "$listen" ] || [[ $listen =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "EF_LISTEN_ADDRESS is not an IPv4: $listen"
if [ -n "${EF_START:-}" ]; then
  start_mode=$EF_START
elif [ -d /run/systemd/system ]; then
  start_mode=systemd
else
  start_mode=background
fi
[[ $start_mode =~ ^(systemd|background)$ ]] || die "EF_START is neither systemd nor background: $start_mode"
deadline=$((SECONDS + wait_seconds))

# --- packages ---------------------------------------------------------------------------------------------------
# Several nodes of a test share one root: one installs at a time. The package must not start its node on install
# (a node started with a random cookie and no peer discovery would make a database of its own, standalone, that
# later configuration does not change): policy-rc.d denies every start during the install.
policy=/usr/sbin/policy-rc.d policy_ours=""
remove_policy() {
  [ -z "$policy_ours" ] || rm -f "$policy"
  policy_ours=""
}
trap remove_policy EXIT # also when the script is cut short mid-install: no service of the host stays denied
trap "exit 143" TERM
trap "exit 130" INT
install_packages() {
  local missing=()
  command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
  command -v aws >/dev/null 2>&1 || missing+=(awscli)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && policy_ours=1
  fi
  local log
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"; } >"$log" 2>&1; then
    die "apt-get install ${missing[*]} failed: $(grep -E '^(E|W):' "$log" | tail -n 1 | tr -d '\n')"
  fi
  remove_policy
  rm -f "$log"
}
exec 9>/var/lock/envfixtures-rabbitmq-node.lock
flock -w "$wait_seconds" 9 || die "another rabbitmq-node.sh held the install lock for $wait_seconds s"
install_packages
flock -u 9
t_packages=$SECONDS

# --- secrets ----------------------------------------------------------------------------------------------------
aws_args=(--region "$EF_REGION" --output text)
[ -z "${EF_AWS_ENDPOINT_URL:-}" ] || aws_args+=(--endpoint-url "$EF_AWS_ENDPOINT_URL")
# read_secret VAR ARN: the secret string of ARN into VAR (never printed); a failure in one line.
read_secret() {
  local err value cause
  err=$(mktemp)
  if ! value=$(aws "${aws_args[@]}" secretsmanager get-secret-value --secret-id "$2" --query SecretString 2>"$err"); then
    cause=$(grep -v '^[[:space:]]*$' "$err" | tail -n 1)
    rm -f "$err"
    die "reading secret $2: ${cause:-aws exited non-zero}"
  fi
  rm -f "$err"
  [ -n "$value" ] || die "the secret $2 is empty"
  printf -v "$1" '%s' "$value"
}
# read_field VAR NAME JSON: the non-empty string field NAME of the JSON object (the object is a secret: stdin only).
read_field() {
  local value
  value=$(python3 -c 'import json, sys
try:
    value = json.load(sys.stdin).get(sys.argv[1])
except (ValueError, AttributeError):
    sys.exit(1)
if not isinstance(value, str) or not value:
    sys.exit(1)
sys.stdout.write(value)' "$2" <<<"$3") || die "the admin secret $EF_ADMIN_SECRET_ARN is not JSON with a non-empty \"$2\""
  printf -v "$1" '%s' "$value"
}
cookie="" admin_json="" admin_user="" admin_password=""
read_secret cookie "$EF_COOKIE_SECRET_ARN"
read_secret admin_json "$EF_ADMIN_SECRET_ARN"
read_field admin_user username "$admin_json"
read_field admin_password password "$admin_json"
unset admin_json

# --- node name and configuration --------------------------------------------------------------------------------
longnames=false
if [ -n "${EF_NODE_NAME:-}" ]; then
  node=$EF_NODE_NAME
elif [ "$discovery" = aws ]; then
  # IMDSv2: the private IPv4 (rabbit_peer_discovery_aws with use_private_ip returns rabbit@<that address>).
  ip=$(python3 -c 'import urllib.request as u
t = u.urlopen(u.Request("http://169.254.169.254/latest/api/token", method="PUT",
    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}), timeout=5).read().decode()
print(u.urlopen(u.Request("http://169.254.169.254/latest/meta-data/local-ipv4",
    headers={"X-aws-ec2-metadata-token": t}), timeout=5).read().decode())') ||
    die "no private IPv4 from the instance metadata (IMDSv2); set EF_NODE_NAME off EC2"
  node=rabbit@$ip
else
  node=rabbit@$(hostname -s)
fi
[[ $node =~ ^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$ ]] || die "not a node name: $node"
[[ ${node#*@} != *.* ]] || longnames=true

home=$(getent passwd rabbitmq | cut -d: -f6)
[ -n "$home" ] || die "no rabbitmq user after the install"
install -d -o rabbitmq -g rabbitmq -m 0750 "$home" "$data_dir" "$log_dir"
install -d -m 0755 "$conf_dir"

# The cookie: the rabbitmq user's, read by the nodes and by the CLI tools run as that user.
cookie_file=$home/.erlang.cookie
cookie_tmp=$(mktemp "$home/.erlang.cookie.XXXXXX")
printf '%s' "$cookie" >"$cookie_tmp"
unset cookie
chown rabbitmq:rabbitmq "$cookie_tmp"
chmod 0400 "$cookie_tmp"
mv -f "$cookie_tmp" "$cookie_file"

erl_interface=""
if [ -n "$listen" ]; then
  erl_interface="-kernel inet_dist_use_interface {${listen//./,}}"
  amqp_listener="listeners.tcp.1 = $listen:$amqp_port"
else
  amqp_listener="listeners.tcp.default = $amqp_port"
fi
plugins=rabbitmq_management
{
  echo "# written by rabbitmq-node.sh"
  echo "$amqp_listener"
  echo "management.tcp.port = $management_port"
  [ -z "$listen" ] || echo "management.tcp.ip = $listen"
  echo "log.file.level = info"
  echo "log.console = false"
  if [ "$discovery" = aws ]; then
    plugins+=,rabbitmq_peer_discovery_aws
    echo "cluster_formation.peer_discovery_backend = rabbit_peer_discovery_aws"
    echo "cluster_formation.aws.region = $EF_REGION"
    echo "cluster_formation.aws.use_autoscaling_group = true"
    echo "cluster_formation.aws.use_private_ip = true"
    # The group's instances boot minutes apart: a node waits up to a minute for a peer before it forms a cluster.
    echo "cluster_formation.discovery_retry_limit = 30"
    echo "cluster_formation.discovery_retry_interval = 2000"
  else
    echo "cluster_formation.peer_discovery_backend = classic_config"
    i=0
    IFS=, read -r -a peers <<<"${discovery#static:}"
    for peer in "${peers[@]}"; do
      [[ $peer =~ ^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$ ]] || die "EF_DISCOVERY names something that is not a node: $peer"
      i=$((i + 1))
      echo "cluster_formation.classic_config.nodes.$i = $peer"
    done
  fi
} >"$conf_dir/rabbitmq.conf"
chgrp rabbitmq "$conf_dir/rabbitmq.conf"
chmod 0640 "$conf_dir/rabbitmq.conf"
echo "[$plugins]." >"$conf_dir/enabled_plugins"
# Read by rabbitmq-server and by every CLI tool (their scripts source it): the same node, ports and files.
cat >"$conf_dir/rabbitmq-env.conf" <<EOF
# written by rabbitmq-node.sh
export RABBITMQ_NODENAME=$node
export RABBITMQ_USE_LONGNAME=$longnames
export RABBITMQ_DIST_PORT=$dist_port
export RABBITMQ_CONFIG_FILE=$conf_dir/rabbitmq.conf
export RABBITMQ_ADVANCED_CONFIG_FILE=$conf_dir/advanced.config
export RABBITMQ_ENABLED_PLUGINS_FILE=$conf_dir/enabled_plugins
export RABBITMQ_MNESIA_BASE=$data_dir
export RABBITMQ_LOG_BASE=$log_dir
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$erl_interface"
export RABBITMQ_CTL_ERL_ARGS="$erl_interface"
export ERL_EPMD_PORT=$epmd_port
${listen:+export ERL_EPMD_ADDRESS=$listen}
EOF
export RABBITMQ_CONF_ENV_FILE=$conf_dir/rabbitmq-env.conf

# --- CLI ----------------------------------------------------------------------------------------------------------
bin=/usr/lib/rabbitmq/bin # not the /usr/sbin wrappers: they rebuild the command line through `su -c`
ctl() {
  local tool=$1
  shift
  runuser -u rabbitmq -- "$bin/$tool" "$@"
}
remaining() {
  local left=$((deadline - SECONDS))
  [ "$left" -gt 0 ] || left=1
  echo "$left"
}

# --- start --------------------------------------------------------------------------------------------------------
server_pid=""
if ctl rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  echo "rabbitmq-node: $node already runs"
elif [ "$start_mode" = systemd ]; then
  if [ "$conf_dir" != /etc/rabbitmq ]; then
    mkdir -p /etc/systemd/system/rabbitmq-server.service.d
    printf '[Service]\nEnvironment=RABBITMQ_CONF_ENV_FILE=%s\n' "$RABBITMQ_CONF_ENV_FILE" \
      >/etc/systemd/system/rabbitmq-server.service.d/envfixtures.conf
    systemctl daemon-reload
  fi
  systemctl enable --quiet rabbitmq-server
  systemctl start --no-block rabbitmq-server
else
  (cd "$home" && exec setsid runuser -u rabbitmq -- "$bin/rabbitmq-server" \
    >>"$log_dir/$node.startup.log" 2>&1 </dev/null) &
  server_pid=$!
fi
# Why the node is gone, if it is (its last log line), else nothing.
dead_reason() {
  if [ -n "$server_pid" ] && ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the node's process exited: $(tail -n 1 "$log_dir/$node.startup.log" 2>/dev/null)"
  elif [ "$start_mode" = systemd ] && [ -z "$server_pid" ] && systemctl is-failed --quiet rabbitmq-server; then
    echo "rabbitmq-server.service failed: $(journalctl -u rabbitmq-server -n 1 -o cat 2>/dev/null)"
  fi
}
until ctl rabbitmq-diagnostics -q ping >/dev/null 2>&1; do
  reason=$(dead_reason)
  [ -z "$reason" ] || die "$node did not start: $reason"
  [ "$SECONDS" -lt "$deadline" ] || die "$node did not answer within ${wait_seconds} s (see $log_dir)"
  sleep 2
done
ctl rabbitmqctl -q await_startup --timeout "$(remaining)" >/dev/null 2>&1 ||
  die "$node did not finish booting within ${wait_seconds} s: ${reason:-$(dead_reason)} (see $log_dir/$node.log)"
t_up=$SECONDS
ctl rabbitmqctl -q await_online_nodes "$EF_NODE_COUNT" --timeout "$(remaining)" >/dev/null 2>&1 ||
  die "the cluster of $node did not reach $EF_NODE_COUNT running nodes within ${wait_seconds} s"
t_cluster=$SECONDS

# --- the administrator ----------------------------------------------------------------------------------------------
# The first node to get here creates it; the others find it (or lose the race to create it, and then find it).
# Passwords go through stdin: rabbitmqctl reads it there when the argument is left out.
user_exists() {
  ctl rabbitmqctl -q list_users --formatter json | python3 -c 'import json, sys
sys.exit(0 if any(u.get("user") == sys.argv[1] for u in json.load(sys.stdin)) else 1)' "$1"
}
if ! user_exists "$admin_user"; then
  if ! ctl rabbitmqctl -q add_user "$admin_user" <<<"$admin_password" >/dev/null 2>&1 && ! user_exists "$admin_user"; then
    die "could not create the administrator on $node"
  fi
fi
ctl rabbitmqctl -q set_user_tags "$admin_user" administrator >/dev/null ||
  die "could not tag the administrator on $node"
ctl rabbitmqctl -q set_permissions -p / "$admin_user" '.*' '.*' '.*' >/dev/null ||
  die "could not give the administrator permissions on / on $node"
if user_exists guest; then
  if ! ctl rabbitmqctl -q delete_user guest >/dev/null 2>&1 && user_exists guest; then
    die "could not delete guest on $node"
  fi
fi
ctl rabbitmqctl -q authenticate_user "$admin_user" <<<"$admin_password" >/dev/null 2>&1 ||
  die "the administrator does not authenticate with the secret's password on $node (created earlier with another?)"
unset admin_password

echo "rabbitmq-node: $node runs in a cluster of $EF_NODE_COUNT nodes; administrator ready, guest removed" \
  "(after $SECONDS s: packages $t_packages s, node up $((t_up - t_packages)) s, cluster $((t_cluster - t_up)) s)"
