#!/usr/bin/env bash
# Python base images made from Debian's own packages, for machines where no registry serves
# python:*-slim (air-gapped ones, and this project's CI):
#
#   scripts/base-image.sh podman
#   localhost/chainrule-python:bookworm-1a2b3c4d5e6f           <- PYTHON_IMAGE: python3, pip, venv
#   localhost/chainrule-python:bookworm-1a2b3c4d5e6f-runtime   <- RUNTIME_IMAGE: python3 alone
#
# mmdebstrap builds each as a bookworm minbase; the tarball is imported with what the Dockerfile
# expects of a python image: `python` (and `pip`) on PATH, and PIP_BREAK_SYSTEM_PACKAGES=1 since
# Debian marks its Python as externally managed. The runtime one has no pip: the image copies a
# finished virtualenv into it. Tags carry a hash of this file, so a changed package list builds
# new images and an unchanged one reuses them (FORCE=1 rebuilds). Needs root (mmdebstrap's root
# mode); `make system-deps` installs mmdebstrap.
set -euo pipefail
ENGINE=${1:-podman}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
tag="localhost/chainrule-python:$SUITE-$(sha256sum "$0" | cut -c1-12)"

# base TAG PACKAGES [IMPORT-OPTION...]: make the image TAG from Debian's PACKAGES unless it exists.
base() {
    if [ -z "${FORCE:-}" ] && "$ENGINE" image inspect "$1" >/dev/null 2>&1; then
        return
    fi
    echo "base-image: building $1 with mmdebstrap" >&2
    local tarball
    tarball=$(mktemp --suffix=.tar)
    # The merged-usr hook makes the /usr symlinks itself: the usrmerge package would bring perl
    # (47 MB). Documentation, manual pages, translations and CPython's own test package are never
    # read in a server image; copyright files stay. (The test package goes after the install:
    # python3.11's postinst compiles it.) A failed run leaves no image behind to be reused.
    if ! mmdebstrap --variant=minbase --mode=root --include="$2" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='rm -rf "$1"/usr/lib/python3*/test' \
        "$SUITE" "$tarball" \
        "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main" </dev/null >&2; then
        rm -f "$tarball"
        return 1
    fi
    "$ENGINE" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' "${@:3}" --change 'CMD ["python3"]' \
        "$tarball" "$1" >&2
    rm -f "$tarball"
}

base "$tag" python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1'
base "$tag-runtime" python3,python-is-python3
echo "$tag"
echo "$tag-runtime"
