#!/bin/bash
# envfixtures: boot a Mesos master host (Debian 12, run as root by the launch template's UserData).
#
# ZooKeeper from Debian's packages (zookeeperd), one member per master; Mesos master and Marathon as the mesosphere
# container images under Debian's docker.io (nobody packages Mesos or Marathon any more). The masters find each
# other by their tags (EC2 DescribeInstances): the ZooKeeper ensemble is the masters' private addresses in order,
# each one's id its place in that order.
#
# Environment: EF_REGION, EF_ENV_NAME (the instances' EnvName tag), EF_MASTER_ROLE (the masters' Role tag),
# EF_MASTER_COUNT; optional EF_AWS_ENDPOINT_URL (aws --endpoint-url, for tests against a moto server). Knobs with
# production defaults: EF_MY_IP (else the instance metadata's), EF_WAIT (seconds, default 900), EF_ENV_TAG (EnvName),
# EF_MESOS_MASTER_IMAGE, EF_MARATHON_IMAGE, EF_SKIP_INSTALL=1 (packages already there), EF_ZK_CONF (ZooKeeper's
# configuration, default Debian's /etc/zookeeper/conf/zoo.cfg).
#
# Exits 0 only once Marathon's API answers /ping on this host; non-zero with a one-line cause otherwise.
set -euo pipefail

MESOS_MASTER_IMAGE=${EF_MESOS_MASTER_IMAGE:-mesosphere/mesos-master:1.7.1}
MARATHON_IMAGE=${EF_MARATHON_IMAGE:-mesosphere/marathon:v1.8.244}
WAIT=${EF_WAIT:-900}
ENV_TAG=${EF_ENV_TAG:-EnvName}

fail() { echo "mesos-master.sh: $*" >&2; exit 1; }
say() { echo "mesos-master.sh: $*"; }

for var in EF_REGION EF_ENV_NAME EF_MASTER_ROLE EF_MASTER_COUNT; do
  [ -n "${!var:-}" ] || fail "$var is not set"
done
[[ $EF_MASTER_COUNT =~ ^[1-9][0-9]*$ ]] || fail "EF_MASTER_COUNT=$EF_MASTER_COUNT is not a number of masters"

aws_() {
  if [ -n "${EF_AWS_ENDPOINT_URL:-}" ]; then
    aws --endpoint-url "$EF_AWS_ENDPOINT_URL" --region "$EF_REGION" "$@"
  else
    aws --region "$EF_REGION" "$@"
  fi
}

metadata() {
  local token
  token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token) ||
    return 1
  curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

# The masters' private addresses, sorted (pending ones have theirs already).
master_ips() {
  aws_ ec2 describe-instances --output text \
    --filters "Name=tag:$ENV_TAG,Values=$EF_ENV_NAME" "Name=tag:Role,Values=$EF_MASTER_ROLE" \
    "Name=instance-state-name,Values=pending,running" \
    --query 'Reservations[].Instances[].PrivateIpAddress' | tr -s '\t ' '\n' | grep -v -e '^None$' -e '^$' |
    sort -t. -k1,1n -k2,2n -k3,3n -k4,4n
}

if [ "${EF_SKIP_INSTALL:-0}" != 1 ]; then
  say "installing zookeeperd and docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || fail "apt-get update failed"
  apt-get install -y -q zookeeperd docker.io awscli curl >/dev/null || fail "apt-get install zookeeperd docker.io failed"
fi

my_ip=${EF_MY_IP:-$(metadata local-ipv4)} || fail "no private address from the instance metadata"
[ -n "$my_ip" ] || fail "no private address from the instance metadata"

say "waiting for $EF_MASTER_COUNT master(s) tagged $ENV_TAG=$EF_ENV_NAME Role=$EF_MASTER_ROLE"
deadline=$((SECONDS + WAIT))
while :; do
  mapfile -t masters < <(master_ips || true)
  [ "${#masters[@]}" -ge "$EF_MASTER_COUNT" ] && break
  [ "$SECONDS" -lt "$deadline" ] ||
    fail "only ${#masters[@]} of $EF_MASTER_COUNT masters found after ${WAIT}s (ec2 describe-instances)"
  sleep 5
done
masters=("${masters[@]:0:$EF_MASTER_COUNT}")

my_id=0
servers=()
zk_hosts=()
for i in "${!masters[@]}"; do
  servers+=("server.$((i + 1))=${masters[$i]}:2888:3888")
  zk_hosts+=("${masters[$i]}:2181")
  [ "${masters[$i]}" = "$my_ip" ] && my_id=$((i + 1))
done
[ "$my_id" -gt 0 ] || fail "this host ($my_ip) is not among the masters found: ${masters[*]}"
zk=$(IFS=,; echo "${zk_hosts[*]}")
quorum=$((EF_MASTER_COUNT / 2 + 1))

say "ZooKeeper member $my_id of ${#masters[@]}: ${masters[*]}"
conf=${EF_ZK_CONF:-/etc/zookeeper/conf/zoo.cfg}
[ -f "$conf" ] || fail "$conf not found (is zookeeperd installed?)"
sed -i -e '/^server\.[0-9]*=/d' -e '/^4lw\.commands\.whitelist=/d' "$conf"
printf '%s\n' "${servers[@]}" "4lw.commands.whitelist=ruok,srvr" >>"$conf"
data_dir=$(sed -n 's/^dataDir=//p' "$conf" | tail -n 1)
mkdir -p "${data_dir:-/var/lib/zookeeper}"
echo "$my_id" >"${data_dir:-/var/lib/zookeeper}/myid"  # Debian links it to /etc/zookeeper/conf/myid
chown -R zookeeper: "${data_dir:-/var/lib/zookeeper}" 2>/dev/null || true
systemctl enable zookeeper >/dev/null 2>&1 || true
said=$(systemctl restart zookeeper 2>&1) || fail "zookeeper did not start: ${said//$'\n'/; } (journalctl -u zookeeper)"
said=$(systemctl enable --now docker 2>&1) || fail "docker did not start: ${said//$'\n'/; } (journalctl -u docker)"

say "starting mesos-master ($MESOS_MASTER_IMAGE) and marathon ($MARATHON_IMAGE)"
mkdir -p /var/lib/mesos /var/log/mesos
docker rm -f mesos-master marathon >/dev/null 2>&1 || true
docker run -d --name mesos-master --restart unless-stopped --net host \
  -e "MESOS_ZK=zk://$zk/mesos" -e "MESOS_QUORUM=$quorum" -e "MESOS_IP=$my_ip" -e "MESOS_HOSTNAME=$my_ip" \
  -e "MESOS_CLUSTER=$EF_ENV_NAME" -e MESOS_REGISTRY=replicated_log -e MESOS_WORK_DIR=/var/lib/mesos \
  -e MESOS_LOG_DIR=/var/log/mesos -v /var/lib/mesos:/var/lib/mesos -v /var/log/mesos:/var/log/mesos \
  "$MESOS_MASTER_IMAGE" >/dev/null || fail "docker run $MESOS_MASTER_IMAGE failed"
docker run -d --name marathon --restart unless-stopped --net host "$MARATHON_IMAGE" \
  --master "zk://$zk/mesos" --zk "zk://$zk/marathon" --hostname "$my_ip" --http_port 8080 >/dev/null ||
  fail "docker run $MARATHON_IMAGE failed"

say "waiting for Marathon to answer /ping"
deadline=$((SECONDS + WAIT))
until curl -sf --max-time 5 http://127.0.0.1:8080/ping >/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    last=$(docker logs --tail 1 marathon 2>&1 | tr -d '\r' || true)
    fail "Marathon did not answer http://127.0.0.1:8080/ping within ${WAIT}s; its last log line: ${last:-none}"
  fi
  sleep 5
done
say "ready: Marathon answers on $my_ip:8080, Mesos master in zk://$zk/mesos"
