"""The pytest side: the plugin (wires only), its configuration, the run, reports, evidence, promotion."""
