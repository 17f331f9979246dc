#!/usr/bin/env bash
# Build the container image from deploy/Dockerfile (`make image`):
#
#   scripts/image.sh          # prints the image reference last, e.g. chainrule:0.1.0
#
# and write build/image/built.json, which `make image-test` (tests/image/) reads.
# Engine: docker when `docker info` answers (a docker CLI without a daemon is common), else podman,
# with deploy/podman/containers.conf (runc, no default rlimits: what this VM allows). ENGINE=...
# picks one. The tag is the package version in pyproject.toml (IMAGE=... overrides it).
# Bases: PYTHON_IMAGE (and RUNTIME_IMAGE, by default the same) when set; else the Dockerfile's
# default if the engine has it or can pull it; else Debian-package ones from scripts/base-image.sh
# (no registry serves python images here).
# With podman, the host's pip configuration is mounted into the build (scripts/pip_build_config.py)
# so pip reaches the same package index as the host. SERVER_EXTRAS=otel,... replaces the
# Dockerfile's list of server extras to install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

engine=${ENGINE:-}
if [ -z "$engine" ]; then
    if docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
fi
if [ "$engine" = podman ]; then
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
fi
version=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
image=${IMAGE:-chainrule:$version}

base=${PYTHON_IMAGE:-}
runtime=${RUNTIME_IMAGE:-$base}
if [ -z "$base" ]; then
    default=$(sed -n 's/^ARG PYTHON_IMAGE=//p' deploy/Dockerfile)
    if "$engine" image inspect "$default" >/dev/null 2>&1 || "$engine" pull -q "$default" >/dev/null 2>&1; then
        base=$default runtime=$default
    else
        echo "image: $default cannot be pulled; making Debian-package bases instead" >&2
        bases=$(scripts/base-image.sh "$engine")
        base=${bases%%$'\n'*} runtime=${bases##*$'\n'}
    fi
fi

arguments=(--file deploy/Dockerfile --tag "$image")
arguments+=(--build-arg "PYTHON_IMAGE=$base" --build-arg "RUNTIME_IMAGE=$runtime")
# Unset, the Dockerfile's default extras apply (the one place that lists what the image installs).
if [ -n "${SERVER_EXTRAS+set}" ]; then
    arguments+=(--build-arg "SERVER_EXTRAS=$SERVER_EXTRAS")
fi
if [ "$engine" = podman ]; then
    mapfile -t mounts < <("$PYTHON" scripts/pip_build_config.py build/image)
    # docker format: OCI images have no HEALTHCHECK.
    arguments+=(--format docker --layers "${mounts[@]}")
fi

echo "image: $engine build $image from $base, runtime $runtime" >&2
start=$(date +%s)
"$engine" build "${arguments[@]}" . >&2
seconds=$(($(date +%s) - start))
# Images left untagged by earlier builds go; this build's layers stay as the next one's cache.
"$engine" image prune --force --filter "until=$start" >/dev/null
echo "image: built $image in $seconds s" >&2

# What tests/image/ runs: which engine, which image, and how the build went.
mkdir -p build/image
cat >build/image/built.json <<JSON
{"engine": "$engine", "image": "$image", "containers_conf": "${CONTAINERS_CONF:-}",
 "python_image": "$base", "runtime_image": "$runtime", "build_seconds": $seconds}
JSON
echo "$image"
