#!/usr/bin/env bash
# Build the simulated Pi's image, offline from any image registry:
#   pimq/debian:bookworm  debian:bookworm if it can be pulled, else debootstrap
#   pimq/pi-node:<hash>   tests/harness/image/Dockerfile on top of it
# Both are cached: nothing is rebuilt unless the image's files change.
# Prints the node image's name on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '\033[1m[image]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[image] error:\033[0m %s\n' "$*" >&2; exit 1; }
docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'make setup' first"

base=pimq/debian:bookworm
if ! docker image inspect "$base" >/dev/null 2>&1; then
  if timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
    say "using debian:bookworm from the registry"
    docker tag debian:bookworm "$base"
  else
    say "debian:bookworm cannot be pulled: building it with debootstrap (about a minute)"
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run 'sudo make classroom' once, or load a debian:bookworm image"
    command -v debootstrap >/dev/null || die "debootstrap is missing: run 'make setup'"
    # The Debian mirror: $PIMQ_DEBIAN_MIRROR, else the one this machine's apt uses.
    mirror=${PIMQ_DEBIAN_MIRROR:-$(apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null \
      | awk '$2=="bookworm"{print $1; exit}')}
    security=${PIMQ_DEBIAN_SECURITY_MIRROR:-$(apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null \
      | awk '$2=="bookworm-security"{print $1; exit}')}
    [ -n "$mirror" ] || die "no Debian bookworm mirror in this machine's apt sources: set PIMQ_DEBIAN_MIRROR=<url of a Debian mirror>"
    root=.classroom/rootfs
    rm -rf "$root" && mkdir -p .classroom
    if ! debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >.classroom/debootstrap.log 2>&1; then
      tail -n 15 .classroom/debootstrap.log >&2
      die "debootstrap failed (full log: .classroom/debootstrap.log): check that $mirror is reachable, or set PIMQ_DEBIAN_MIRROR"
    fi
    {
      echo "deb $mirror bookworm main"
      echo "deb $mirror bookworm-updates main"
      [ -n "$security" ] && echo "deb $security bookworm-security main"
    } > "$root/etc/apt/sources.list"
    tar -C "$root" --numeric-owner -c . | docker import - "$base" >/dev/null
    rm -rf "$root"
  fi
fi

mkdir -p .classroom
tag=$( (cd tests/harness/image && cat Dockerfile ./*.conf; docker image inspect -f '{{.Id}}' "$base") | sha256sum | cut -c1-12)
image=pimq/pi-node:$tag
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "building $image (a few minutes the first time)"
  docker build -q --build-arg BASE="$base" -t "$image" tests/harness/image >.classroom/image-build.log 2>&1 \
    || { tail -n 20 .classroom/image-build.log >&2; die "building the node image failed (log: .classroom/image-build.log)"; }
fi
docker tag "$image" pimq/pi-node:latest
echo "$image"
