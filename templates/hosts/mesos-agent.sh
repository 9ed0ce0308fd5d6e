#!/bin/bash
# envfixtures: boot a Mesos agent host (Debian 12, run as root by the launch template's UserData).
#
# Docker from Debian's packages (docker.io); the Mesos agent as the mesosphere container image, with the docker
# containerizer (the apps are docker images). It finds the masters by their tags (EC2 DescribeInstances), as they
# find each other, and reaches them through their ZooKeeper ensemble.
#
# Environment: EF_REGION, EF_ENV_NAME (the instances' EnvName tag), EF_MASTER_ROLE (the masters' Role tag),
# EF_MASTER_COUNT; optional EF_AWS_ENDPOINT_URL (aws --endpoint-url, for tests against a moto server). Knobs with
# production defaults: EF_MY_IP (else the instance metadata's), EF_WAIT (seconds, default 1200: the masters boot at
# the same time), EF_ENV_TAG (EnvName), EF_MESOS_AGENT_IMAGE, EF_SKIP_INSTALL=1 (packages already there).
#
# Exits 0 only once the leading master lists this agent among its registered agents; non-zero with a one-line
# cause otherwise.
set -euo pipefail

MESOS_AGENT_IMAGE=${EF_MESOS_AGENT_IMAGE:-mesosphere/mesos-slave:1.7.1}
WAIT=${EF_WAIT:-1200}
ENV_TAG=${EF_ENV_TAG:-EnvName}

fail() { echo "mesos-agent.sh: $*" >&2; exit 1; }
say() { echo "mesos-agent.sh: $*"; }

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

master_ips() {
  aws_ ec2 describe-instances --output text \
    --filters "Name=tag:$ENV_TAG,Values=$EF_ENV_NAME" "Name=tag:Role,Values=$EF_MASTER_ROLE" \
    "Name=instance-state-name,Values=pending,running" \
    --query 'Reservations[].Instances[].PrivateIpAddress' | tr -s '\t ' '\n' | grep -v -e '^None$' -e '^$' |
    sort -t. -k1,1n -k2,2n -k3,3n -k4,4n
}

if [ "${EF_SKIP_INSTALL:-0}" != 1 ]; then
  say "installing docker.io and the ECR credential helper"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || fail "apt-get update failed"
  # amazon-ecr-credential-helper: the apps' docker.tar.gz names it for the environment's ECR registry (credHelpers)
  apt-get install -y -q docker.io amazon-ecr-credential-helper awscli curl >/dev/null ||
    fail "apt-get install docker.io amazon-ecr-credential-helper failed"
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
zk=$(printf '%s:2181,' "${masters[@]}")
zk=${zk%,}

said=$(systemctl enable --now docker 2>&1) || fail "docker did not start: ${said//$'\n'/; } (journalctl -u docker)"
say "starting mesos-agent ($MESOS_AGENT_IMAGE), masters zk://$zk/mesos"
mkdir -p /var/lib/mesos /var/log/mesos
docker rm -f mesos-agent >/dev/null 2>&1 || true
docker run -d --name mesos-agent --restart unless-stopped --net host --pid host --privileged \
  -e "MESOS_MASTER=zk://$zk/mesos" -e "MESOS_IP=$my_ip" -e "MESOS_HOSTNAME=$my_ip" \
  -e MESOS_CONTAINERIZERS=docker,mesos -e "MESOS_DOCKER_MESOS_IMAGE=$MESOS_AGENT_IMAGE" \
  -e MESOS_WORK_DIR=/var/lib/mesos -e MESOS_LOG_DIR=/var/log/mesos -e MESOS_SYSTEMD_ENABLE_SUPPORT=false \
  -e "MESOS_RESOURCES=ports:[31000-32000]" \
  -v /var/run/docker.sock:/var/run/docker.sock -v /sys/fs/cgroup:/sys/fs/cgroup \
  -v /usr/bin/docker-credential-ecr-login:/usr/local/bin/docker-credential-ecr-login:ro \
  -v /var/lib/mesos:/var/lib/mesos -v /var/log/mesos:/var/log/mesos \
  "$MESOS_AGENT_IMAGE" >/dev/null || fail "docker run $MESOS_AGENT_IMAGE failed"

# Registered: a master (any; a follower redirects to the leader) lists an agent whose hostname is this host's.
registered() {
  local ip
  for ip in "${masters[@]}"; do
    if curl -sfL --max-time 5 "http://$ip:5050/slaves" | grep -q "\"hostname\":\"$my_ip\""; then
      return 0
    fi
  done
  return 1
}

say "waiting for a master to list this agent"
deadline=$((SECONDS + WAIT))
until registered; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    last=$(docker logs --tail 1 mesos-agent 2>&1 | tr -d '\r' || true)
    fail "no master lists this agent ($my_ip) after ${WAIT}s; its last log line: ${last:-none}"
  fi
  sleep 5
done
say "ready: registered with the masters in zk://$zk/mesos"
