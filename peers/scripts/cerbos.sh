#!/usr/bin/env bash
# Fetches the Cerbos PDP binary from npm (@cerbos/cerbos-linux-x64, pinned) into a cache directory
# and prints its path. Nothing of it is committed: it is downloaded when a bench needs it.
#   CERBOS_BIN=$(bash peers/scripts/cerbos.sh)
set -euo pipefail
version=${CERBOS_VERSION:-0.55.0}
dir=${CERBOS_CACHE:-${TMPDIR:-/tmp}/verdict-cerbos-$version}
bin="$dir/package/cerbos-linux-x64"
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "@cerbos/cerbos-linux-x64@$version" >/dev/null && tar xzf cerbos-cerbos-linux-x64-"$version".tgz && chmod +x package/cerbos-linux-x64) >&2
fi
"$bin" --version | head -1 >&2
echo "$bin"
