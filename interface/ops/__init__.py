"""Running the system: the service built in one function, cluster, reload, alerts, retention
jobs, the command line, the benchmark.
"""
