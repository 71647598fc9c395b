"""Testing helpers: check_grads compares derivatives with finite differences."""
