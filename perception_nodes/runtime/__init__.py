"""ROS-free cores of the nodes: synchronization bookkeeping, keep-latest workers, diagnostics."""
