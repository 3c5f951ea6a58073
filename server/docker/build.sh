#!/usr/bin/env bash
# Builds the image of the Usher reference server locally, with no registry:
#
#   server/docker/build.sh [TAG]          # default TAG: usher-server:dev (or $USHER_IMAGE)
#
# USHER_IMAGE_PROFILE=dev builds the binary with the dev profile instead of release: a quicker
# first build (for CI from an empty target dir), a slower server.
#
# 1. a static `usher` binary: cargo build (release) for x86_64-unknown-linux-gnu with
#    -C target-feature=+crt-static, in the workspace's target dir (or $CARGO_TARGET_DIR), so a
#    second run rebuilds only what changed;
# 2. `docker build` of a FROM scratch image whose context is a temporary folder holding only the
#    Dockerfile, the binary and the default configuration (no upload of the workspace).
#
# Idempotent: an unchanged binary reuses the cached layers and gives the same image id.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${1:-${USHER_IMAGE:-usher-server:dev}}"
triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$root/target}"
profile="${USHER_IMAGE_PROFILE:-release}"
case "$profile" in
    release) profile_dir=release ;;
    dev) profile_dir=debug ;;
    *) echo "build.sh: USHER_IMAGE_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
binary="$target_dir/$triple/$profile_dir/usher"

started=$(date +%s)
echo "build.sh: cargo build --profile $profile --target $triple (crt-static) into $target_dir" >&2
# RUSTFLAGS with --target apply to the target's artifacts only: the host's build scripts and the
# usual debug builds in the same target dir are not rebuilt. Incremental: a change to the
# workspace's crates recompiles what changed, not the whole crates (the dependencies are built
# once either way).
(cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_INCREMENTAL=true \
    cargo build --profile "$profile" --target "$triple" -p usher-conformance --bin usher)

# A dynamic binary would not start in an empty image: refuse it here, not at `docker run`.
if readelf -lW "$binary" | grep -q 'program interpreter'; then
    echo "build.sh: $binary is dynamically linked (crt-static did not apply)" >&2
    exit 1
fi

context="$(mktemp -d "${TMPDIR:-/tmp}/usher-image.XXXXXX")"
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$here/usher.conf" "$context/"
# A hard link when the target dir is on the same file system (no 100 MB copy), else a copy.
ln "$binary" "$context/usher" 2>/dev/null || cp "$binary" "$context/usher"

echo "build.sh: docker build -t $tag" >&2
# The classic builder: this daemon (Debian's docker.io) has no buildx; the image needs nothing
# BuildKit adds. --quiet prints only the image id.
id=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context")
echo "build.sh: $tag is $id ($(($(date +%s) - started)) s)" >&2
