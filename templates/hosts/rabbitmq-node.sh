#!/bin/bash
# PLACEHOLDER (hosts helper): the broker-script helper owns this file and replaces it; it exists so that every
# script the template references is there. It boots nothing and fails, so a broker host never signals success.
echo "rabbitmq-node.sh: placeholder, not the broker's boot script" >&2
exit 1
