"""Test support that drives the nodes over real ROS 2 topics: the probe (feeds one camera, records
every output) and the six-camera rig load generator.

Used by the tests, the benchmarks, the embedded demo and ``bench``; it imports rclpy and the ROS
message packages like ``ros`` does. The library layers never import it (see the import-linter
contracts in pyproject.toml); the nodes run without it.
"""
