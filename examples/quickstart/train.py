"""A stand-in for a training script: reads params.json, "trains", writes loss.json.

Any program can be a Hyperdock target. The contract: read the parameters from the file
named by $HYPERDOCK_PARAMS (/hyperdock/params.json in a container), write
{"loss": <number>, "state": "ok"} to $HYPERDOCK_LOSS (/hyperdock/loss.json), keep files
in $HYPERDOCK_DIR/out/. This one needs nothing but Python.
"""

import json
import math
import os

params = json.load(open(os.environ.get("HYPERDOCK_PARAMS", "params.json")))
folder = os.environ.get("HYPERDOCK_DIR", ".")

lr = params["learning_rate"]
opt = params["optimizer"]
# A made-up validation loss: best near lr = 0.01 with adam, or sgd with high momentum.
bonus = 0.0 if opt["name"] == "adam" else 0.3 * (1 - opt["momentum"])
curve = []
for epoch in range(1, params["epochs"] + 1):
    fit = (math.log10(lr) + 2) ** 2 / (1 + 0.2 * epoch)
    curve.append(0.1 + fit + bonus + 0.2 * (params["dropout"] - 0.2) ** 2 + 1 / epoch)
    print(f"epoch {epoch}: val_loss {curve[-1]:.4f}")

with open(os.path.join(folder, "graphs.json"), "w") as fh:
    json.dump(
        [
            {
                "name": "Validation loss",
                "x_axis": "epoch",
                "y_axis": "loss",
                "series": [{"label": "val", "x": list(range(1, len(curve) + 1)), "y": curve}],
            }
        ],
        fh,
    )
os.makedirs(os.path.join(folder, "out"), exist_ok=True)
with open(os.path.join(folder, "out", "model.json"), "w") as fh:
    json.dump({"weights": [lr, params["dropout"]]}, fh)
with open(os.environ.get("HYPERDOCK_LOSS", "loss.json"), "w") as fh:
    json.dump({"loss": curve[-1], "state": "ok", "epochs": len(curve)}, fh)
