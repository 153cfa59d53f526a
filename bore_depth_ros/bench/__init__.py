"""Benchmarks (never timed tests; they print figures measured in one run).

- :mod:`.table`: ``bore-depth bench``, the backend table (latency, views/s, memory per model x
  backend x size x batch).
- :mod:`.nodes`: the nodes' own overhead and the surround pipeline's latency over real ROS 2
  (``benchmarks/bench_mono.py``, ``benchmarks/bench_surround.py``).
"""
