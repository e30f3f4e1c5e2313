"""Datasets: the readers behind each Dataset source kind, and the lazily loaded sample library LoadGen drives."""
