"""Configuration files: YAML with line numbers validated by typed models (channels, routing)."""
