"""A bare Flower evaluate app: the baseline ``bench/bench_flower_round.py`` measures us against."""
