"""Search space of the quickstart: what Hyperdock may vary, and how."""

from hyperdock import hp

SPACE = {
    "learning_rate": hp.loguniform("learning_rate", -7, 0),  # e^-7 … 1
    "dropout": hp.quniform("dropout", 0, 0.5, 0.05),
    "optimizer": hp.choice(
        "optimizer",
        [
            {"name": "sgd", "momentum": hp.uniform("momentum", 0.5, 0.99)},
            {"name": "adam"},
        ],
    ),
    "epochs": 20,  # a constant: passed through unchanged
}
