"""The parts of the end-to-end benchmark (``bench/bench_e2e.py`` runs the phases): the message
mix, the MLLP senders and FlowEvent watcher, the processes, CPU and Kafka-record measurement,
and the profiler."""
