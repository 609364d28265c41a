"""Config module of docker/compose.yaml's example experiment (the original's format).

The supervisor image looks config modules up in /app/hyperdock/config, where compose
mounts this folder. The target, docker/Dockerfile.template, computes the loss
FUNCTION = (x - 1)**2 + y (set in compose.yaml), so the best parameters are x = 1, y = 0.
Original modules that do `from hyperopt import hp` work too: the image has hyperopt.
"""

from hyperdock import hp

SPACE = {
    "x": hp.uniform("x", -2, 4),
    "y": hp.quniform("y", 0, 1, 0.25),
    "note": "compose example",
}
