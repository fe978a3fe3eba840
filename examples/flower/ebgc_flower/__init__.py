"""ebgc over a real Flower deployment: FedAvg on scikit-learn's digits (see ../README.md)."""
