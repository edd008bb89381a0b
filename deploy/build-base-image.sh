#!/usr/bin/env bash
# Build a stand-in base image for the Dockerfile without any image registry:
# a minimal Debian (debootstrap --variant=minbase) with python3, python3-venv and ca-certificates,
# fetched from the Debian mirror apt already uses on this machine, then `docker import`ed.
#
#   sudo deploy/build-base-image.sh [IMAGE]          # default IMAGE: vastai-exporter-base:debian
#   docker build --network host --build-arg BASE_IMAGE=vastai-exporter-base:debian -t vastai-exporter .
#
# Needs root, `debootstrap` and a running Docker engine. Environment overrides:
#   MIRROR   Debian mirror URL (default: the first Debian URI of /etc/apt/sources.list{,.d/*})
#   SUITE    Debian suite (default: this machine's codename from /etc/os-release, else bookworm)
#   FORCE=1  rebuild even if IMAGE already exists
set -euo pipefail

image="${1:-${VASTAI_BASE_IMAGE:-vastai-exporter-base:debian}}"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "build-base-image: $image already exists (FORCE=1 rebuilds it)"
  exit 0
fi

# The mirror apt is configured with: deb822 *.sources files first, then one-line *.list files.
find_mirror() {
  local file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # URIs of stanzas that are not the security archive
    uri=$(awk 'BEGIN{RS=""}
               /(^|\n)Types:[^\n]*deb([ \t]|$|\n)/ && !/debian-security/ {
                 if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) {
                   s = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", s); print s; exit
                 }
               }' "$file")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {
                 if ($i !~ /security/) { print $i; exit } else break } }' "$file")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  echo "http://deb.debian.org/debian"
}

mirror="${MIRROR:-$(find_mirror)}"
suite="${SUITE:-$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)}"
suite="${suite:-bookworm}"

command -v debootstrap >/dev/null || { echo "build-base-image: debootstrap is not installed" >&2; exit 1; }
command -v docker >/dev/null || { echo "build-base-image: docker is not installed" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/vastai-base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "build-base-image: debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >/dev/null

# Trust what this machine trusts: certificate authorities added locally (for instance the CA of a
# TLS-inspecting egress proxy, without which pip cannot reach PyPI during `docker build`) are
# copied in, and pip is pointed at the system bundle. HOST_CA_CERTS=0 leaves them out.
if [ "${HOST_CA_CERTS:-1}" = 1 ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  echo "build-base-image: adding the local CAs of /usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"

# Slim it the way the official slim images are: no apt lists, caches, docs or man pages.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache

echo "build-base-image: docker import as $image"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase $suite (python3, python3-venv, ca-certificates) from $mirror" \
  - "$image" >/dev/null
docker image inspect "$image" --format 'build-base-image: {{.RepoTags}} {{.Size}} bytes'
