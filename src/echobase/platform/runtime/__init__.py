"""How processes run on one machine: supervisor, pids, files."""
