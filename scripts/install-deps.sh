#!/bin/sh
# Installs the Debian 12 packages that the build, the demo and the tests need,
# only when some are missing, so a fresh machine needs no manual step.
set -eu

PKGS="build-essential pkg-config clang clang-format \
libcriterion-dev zlib1g-dev liburing-dev libaio-dev libxxhash-dev \
libfuse3-dev fuse3 libjansson-dev \
qemu-utils libvhdi-utils e2fsprogs dosfstools mtools bzip2 gzip unzip \
python3 xxd groff-base bc libclang-rt-dev \
fio gnuplot-nox time \
libtsk-dev ntfs-3g fdisk lvm2 exfatprogs exfat-fuse"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "install-deps: need root (or sudo) to install:$missing" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || { echo "install-deps: apt-get update failed; check network access to the Debian archive" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null || {
	echo "install-deps: apt-get install failed for:$missing" >&2
	exit 1
}
echo "install-deps: done"
