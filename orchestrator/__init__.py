"""Long-running work: the CLI, overnight shifts of parallel agents, and model servers."""
