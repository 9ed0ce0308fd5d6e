"""RabbitMQ for an environment: a local cluster, its management API, queue definitions and topology checks.

- :mod:`.cluster`: start and stop an N-node cluster of real nodes as child processes, on loopback only.
- :mod:`.management`: a small client of the management HTTP API.
- :mod:`.definitions`: load and validate a definitions file (RabbitMQ's export format) before anything is built.
- :mod:`.topology`: import definitions into a vhost, read the live topology, diff it against the desired one.
"""

#: The plugins the environment's broker enables (written to its ``enabled_plugins`` file); the definitions
#: validator refuses an exchange type whose plugin is not among them.
ENABLED_PLUGINS: tuple[str, ...] = ("rabbitmq_management",)
