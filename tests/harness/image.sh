#!/usr/bin/env bash
# Build the simulated Pi's image, offline from any image registry:
#   pimq/debian:<release>      debootstrap of Debian <release> (bookworm: debian:bookworm
#                              if it can be pulled)
#   pimq/pi-node:<hash>        tests/harness/image/Dockerfile on top of it
#                              (tagged pimq/pi-node:<release>; bookworm also :latest)
#   pimq/rabbitmq:<hash>       with --broker: tests/harness/broker-image/Dockerfile on top
#                              of pimq/debian:<release> (its rabbitmq-server, not started;
#                              tagged pimq/rabbitmq:<release>)
# All are cached: nothing is rebuilt unless the image's files change.
# Prints the built image's name on stdout.
#   usage: image.sh [--release bookworm|trixie] [--broker]
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '\033[1m[image]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[image] error:\033[0m %s\n' "$*" >&2; exit 1; }

release=bookworm
kind=node
while (($#)); do
  case $1 in
    --release) release=${2:?--release needs a Debian release}; shift 2 ;;
    --broker) kind=broker; shift ;;
    *) die "usage: image.sh [--release bookworm|trixie] [--broker]" ;;
  esac
done
case $release in
  bookworm | trixie) ;;
  *) die "release $release is not one the simulated classroom builds (bookworm, trixie)" ;;
esac
docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'make setup' first"

# The Debian mirror: $PIMQ_DEBIAN_MIRROR, else the one this machine's apt uses
# (for any release: one mirror serves them all).
apt_site() { apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null | awk -v r="$1" '$2==r{print $1; exit}'; }

debootstrap_base() { # release image
  local rel=$1 img=$2 mirror security root
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run 'sudo make classroom' once, or load a debian:$rel image as $img"
  command -v debootstrap >/dev/null || die "debootstrap is missing: run 'make setup'"
  mirror=${PIMQ_DEBIAN_MIRROR:-$(apt_site bookworm)}
  security=${PIMQ_DEBIAN_SECURITY_MIRROR:-$(apt_site bookworm-security)}
  [ -n "$mirror" ] || die "no Debian mirror in this machine's apt sources: set PIMQ_DEBIAN_MIRROR=<url of a Debian mirror>"
  root=.classroom/rootfs-$rel
  rm -rf "$root" && mkdir -p .classroom
  say "building $img with debootstrap (about a minute)"
  if ! debootstrap --variant=minbase --include=ca-certificates "$rel" "$root" "$mirror" >".classroom/debootstrap-$rel.log" 2>&1; then
    tail -n 15 ".classroom/debootstrap-$rel.log" >&2
    die "debootstrap $rel failed (full log: .classroom/debootstrap-$rel.log): check that $mirror is reachable, or set PIMQ_DEBIAN_MIRROR"
  fi
  {
    echo "deb $mirror $rel main"
    echo "deb $mirror $rel-updates main"
    [ -n "$security" ] && echo "deb $security $rel-security main"
  } > "$root/etc/apt/sources.list"
  tar -C "$root" --numeric-owner -c . | docker import - "$img" >/dev/null
  rm -rf "$root"
}

# One build at a time on this machine (make test converges the room and runs
# Molecule at once; both start here): a second caller waits, then finds the
# images built.
mkdir -p .classroom
exec 9>.classroom/image.lock
flock 9

base=pimq/debian:$release
if ! docker image inspect "$base" >/dev/null 2>&1; then
  if [ "$release" = bookworm ] && timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
    say "using debian:bookworm from the registry"
    docker tag debian:bookworm "$base"
  else
    debootstrap_base "$release" "$base"
  fi
fi

if [ "$kind" = broker ]; then
  dir=tests/harness/broker-image repo=pimq/rabbitmq
else
  dir=tests/harness/image repo=pimq/pi-node
fi
debs=
if [ "$kind" = node ]; then  # the packages the roles install: the node downloads them
  [ -x .venv/bin/python ] || die "no .venv: run 'make setup' first"
  debs=$(.venv/bin/python tests/harness/debs.py | tr '\n' ' ')
fi
tag=$( (cd "$dir" && cat Dockerfile ./*.conf 2>/dev/null; echo "$debs"; docker image inspect -f '{{.Id}}' "$base") | sha256sum | cut -c1-12)
image=$repo:$tag
if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "building $image ($release; a few minutes the first time)"
  log=.classroom/image-build-$kind-$release.log
  docker build -q --build-arg BASE="$base" --build-arg PROVISIONED_DEBS="$debs" -t "$image" "$dir" >"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; die "building the $kind image failed (log: $log)"; }
fi
docker tag "$image" "$repo:$release"
[ "$kind" = node ] && [ "$release" = bookworm ] && docker tag "$image" pimq/pi-node:latest
echo "$image"
