"""Command-line interface: one module per subcommand, parsing and rendering only."""
