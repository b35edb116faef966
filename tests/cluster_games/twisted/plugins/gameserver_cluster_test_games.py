from cluster_test_games import counter

__all__ = ["counter"]
