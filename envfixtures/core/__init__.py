"""The core: state, the build graph, processes, waiting. Knows nothing of pytest nor of any service."""
