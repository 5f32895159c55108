"""Pure planners: current state + releases + policy → Plan (no I/O)."""
