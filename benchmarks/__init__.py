"""The suite's commands, speed and throughput measurements, the probe, env speed, RESULTS.md and figures.

Run from a source checkout. The comparison harness itself is installed with the library (``wm_agent.compare``,
``wm-agent compare``); ``python -m benchmarks.compare`` is an alias of it.
"""
