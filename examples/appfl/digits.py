"""Model, data and metric of the example, in the form APPFL loads from files.

APPFL reads this file three ways: the server instantiates ``DigitsCNN`` (``model_path`` +
``model_name``) and sends this file's source to the clients, which build the same class from it;
the clients call ``client_data`` (``data_configs``), the server ``test_data``
(``val_data_configs``); ``accuracy`` is the metric (``metric_path`` + ``metric_name``).

The data and model are those of ``ebgc demo`` and examples/flower: scikit-learn's 8x8 digits
(bundled with scikit-learn, no download) upsampled to 16x16, 300 images held out for the
server's test, the rest split across the clients by a Dirichlet draw per class (non-IID); a
small CNN (47,530 parameters, 3 tensors above APPFL's usual ``param_cutoff`` of 1024 values).
"""
import numpy as np
import torch


def DigitsCNN():  # noqa: N802 - APPFL instantiates it by this name (model_name)
    """The CNN of ``ebgc demo``."""
    from ebgc.tools.demo import digits_model

    return digits_model()


def _split(num_clients: int, alpha: float, seed: int):
    from ebgc.tools.demo import digits_split

    parts, (xt, yt) = digits_split(seed, num_clients, alpha)
    ds = torch.utils.data.TensorDataset
    return [ds(x, y) for x, y in parts], ds(xt, yt)


def client_data(num_clients: int = 2, client_id: int = 0, alpha: float = 1.0, seed: int = 0):
    """(train, validation) datasets of one client: its share of the training images, and the
    held-out test images (clients do not validate in this example)."""
    parts, test = _split(num_clients, alpha, seed)
    return parts[client_id], test


def test_data(num_clients: int = 2, alpha: float = 1.0, seed: int = 0):
    """The server's held-out test set (300 images)."""
    return _split(num_clients, alpha, seed)[1]


def accuracy(y_true, y_pred):
    """Fraction of correct predictions; y_pred holds the logits."""
    return float(np.mean(np.argmax(y_pred, axis=1) == y_true))
