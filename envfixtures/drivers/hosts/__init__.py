"""Hosts: the inventory of an environment's hosts and the checks run on them (testinfra)."""
