#!/usr/bin/env bash
# Install the Debian packages the data builders need (speech: espeak-ng; music: fluidsynth + a GM soundfont),
# only those that are missing. Needs root or sudo; otherwise says what to install and goes on.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "warning: cannot install ${missing[*]} (not root, no sudo); audio data builders will not work" >&2; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
