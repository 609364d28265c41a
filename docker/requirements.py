"""Print Hyperdock's requirements from pyproject.toml, one per line, for ``pip install -r``.

Used by docker/Dockerfile.worker, .supervisor and .dashboard to install the
dependencies in a layer of their own, before the package's code is copied in, so that
a code change does not download them again:

    python3 requirements.py pyproject.toml [EXTRA ...] > requirements.txt
"""

import sys
import tomllib


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], "rb") as fh:
        project = tomllib.load(fh)["project"]
    requirements = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for extra in argv[1:]:
        if extra not in extras:
            print(f"requirements.py: no extra {extra!r} in {argv[0]}", file=sys.stderr)
            return 2
        requirements += extras[extra]
    print("\n".join(dict.fromkeys(requirements)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
