"""Tests of the runtime block: local processes, recovery, logs, the RPC service."""
