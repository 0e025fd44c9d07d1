"""The per-round driver of bench/bench_eval.py (a Flower App)."""
