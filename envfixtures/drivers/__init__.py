"""Drivers: each service on its own (AWS, PostgreSQL, RabbitMQ, Marathon, hosts); no environment state."""
