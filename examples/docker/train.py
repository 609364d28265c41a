"""Example target for a Docker image: the Hyperdock target contract in a few lines."""

import json
import math
import os

params = json.load(open("/hyperdock/params.json"))
x, y = params["x"], params["y"]
# Branin, a classic test function; its minimum is 0.397887.
a, b, c, r, s, t = 1, 5.1 / (4 * math.pi**2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
loss = a * (y - b * x**2 + c * x - r) ** 2 + s * (1 - t) * math.cos(x) + s

os.makedirs("/hyperdock/out", exist_ok=True)
with open("/hyperdock/out/note.txt", "w") as fh:
    fh.write(f"evaluated x={x}, y={y}\n")
with open("/hyperdock/loss.json", "w") as fh:
    json.dump({"loss": loss, "state": "ok"}, fh)
print(f"loss {loss:.4f}")
