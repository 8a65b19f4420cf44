"""The training engine: configs, the loop and its hooks, checkpoints, distributed helpers, memory guard."""
