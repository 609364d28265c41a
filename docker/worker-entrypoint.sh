#!/bin/sh
# Entry point of the hyperdock-worker image: checks that the results folder is shared
# with the host at the same path, then runs `hyperdock-worker "$@"`.
#
# The worker writes each trial's folder (params.json) into the results folder and asks
# the host's Docker engine to mount that folder into the target container. Docker
# resolves the path on the host, so the results folder must be a bind mount with the
# same path inside and outside the worker container:
#     -v /srv/results:/srv/results -e HYPERDOCK_RESULT_DIR=/srv/results
# Without that, every trial would fail with "the target wrote no loss.json".
# HYPERDOCK_SKIP_MOUNT_CHECK=1 skips the check (e.g. for --command targets that run
# inside this container).
set -eu

results="${HYPERDOCK_RESULT_DIR:-}"
check=yes
previous=
for arg in "$@"; do
    case "$previous" in
        --results) results="$arg" ;;
    esac
    case "$arg" in
        --results=*) results="${arg#--results=}" ;;
        -h|--help) check=no ;;
    esac
    previous="$arg"
done
[ "${HYPERDOCK_SKIP_MOUNT_CHECK:-}" = 1 ] && check=no

fail() {
    echo "hyperdock-worker: $*" >&2
    echo "hyperdock-worker: (HYPERDOCK_SKIP_MOUNT_CHECK=1 skips this check)" >&2
    exit 2
}

# The mount point that holds PATH in this container ("/" for the image's own files).
mount_of() {
    awk -v path="$1" '
        { point = $5; gsub(/\\040/, " ", point) }
        point == "/" || path == point || index(path, point "/") == 1 {
            if (length(point) > length(best)) best = point
        }
        END { print best }' /proc/self/mountinfo
}

if [ "$check" = yes ]; then
    example="-v /srv/results:/srv/results -e HYPERDOCK_RESULT_DIR=/srv/results"
    case "$results" in
        "")
            fail "set HYPERDOCK_RESULT_DIR to the results folder's path on the host, and" \
                "mount it at the same path: $example" ;;
        /*) ;;
        *)
            fail "the results folder must be an absolute host path, got '$results':" \
                "$example" ;;
    esac
    if [ -r /proc/self/mountinfo ] && [ "$(mount_of "$results")" = / ]; then
        hint="mount it at the same path inside the container"
        if [ "$(mount_of /results)" = /results ]; then
            hint="$hint (the original image used -v \$(pwd)/results:/results; this one"
            hint="$hint needs -v \$(pwd)/results:\$(pwd)/results)"
        fi
        fail "the results folder $results is not mounted from the host: $hint:" \
            "-v $results:$results -e HYPERDOCK_RESULT_DIR=$results"
    fi
    if [ -z "${DOCKER_HOST:-}" ] && [ ! -S /var/run/docker.sock ]; then
        echo "hyperdock-worker: warning: /var/run/docker.sock is not mounted, so Docker" \
            "targets cannot run: -v /var/run/docker.sock:/var/run/docker.sock" >&2
    fi
fi

exec hyperdock-worker "$@"
