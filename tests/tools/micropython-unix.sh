#!/usr/bin/env bash
# micropython-unix.sh [OUT]      default OUT: build/micropython
#
# Builds MicroPython's unix port as 32-bit programs, for the firmware heap
# bench (tests/bench/bench_firmware_heap.py): an ESP32 is a 32-bit machine,
# and on a 32-bit build every object, pointer and GC block has the board's
# size. Two programs, both with the ESP32 image's asyncio frozen in:
#
#   OUT/micropython-stock   as a stock image: Sigap's modules are loaded from
#                           .mpy files (sigap deploy) or a ROMFS image
#                           (sigap deploy --romfs)
#   OUT/micropython-sigap   Sigap's board modules frozen in as well
#                           (firmware/tools/sigap_manifest.py, what
#                           firmware/tools/frozen_manifest.py freezes into an
#                           ESP32 image)
#
# The source is Debian's `micropython` source package from the suite SUITE
# (default trixie), fetched with apt-get from the Debian archive this
# machine's apt already uses, verified against the archive's signed index,
# into OUT/src. The C compiler needs gcc-multilib for -m32: installed from
# Debian's packages when run as root, else the one command to run is
# printed. A later run reuses the source and rebuilds only what changed
# (the frozen firmware is compiled again on every run; everything when the
# build flags below change; another SUITE needs OUT removed). Prints the two
# programs' paths and then that of their mpy-cross (OUT/mpy-cross, which the
# bench compiles the .mpy files with) on its last three lines.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$top/build/micropython}
suite=${SUITE:-trixie}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/build.log
: >"$log"

say() { echo "micropython-unix: $*" >&2; }
fail() { say "$*"; exit 1; }

# 1. A C compiler that makes 32-bit programs.
probe=$out/m32-probe
if ! echo 'int main(void){return 0;}' | gcc -m32 -x c - -o "$probe" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's gcc-multilib (gcc -m32)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >>"$log" 2>&1
    apt-get install -y -qq gcc-multilib >>"$log" 2>&1 || fail "apt-get install gcc-multilib failed (see $log)"
  else
    fail "gcc cannot build 32-bit programs: sudo apt-get install gcc-multilib, then run again"
  fi
fi
rm -f "$probe"

# 2. The source: Debian's micropython source package.
src=$out/src
if [ ! -f "$src/py/mpconfig.h" ]; then
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: MicroPython's source comes from Debian's archive"
  # The Debian archive this machine's apt uses (its main component, not the security one).
  # (awk reads to the end: an early exit would break apt-cache's pipe under pipefail)
  uri=$(apt-cache policy | awk '
    /^ *[0-9]+ [a-z]+:\/\// { uri = $2; suite = $3 }
    !found && /release .*o=Debian,/ && /l=Debian,/ && /c=main,/ && suite !~ /security/ { print uri; found = 1 }') || true
  [ -n "$uri" ] || fail "no Debian archive in apt's sources (apt-cache policy names none)"
  apt_dir=$out/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$out/dl"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  echo "deb-src [signed-by=$keyring] $uri $suite main" >"$apt_dir/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
  say "fetching Debian's micropython source package ($suite)"
  apt-get "${opts[@]}" update >>"$log" 2>&1 || fail "apt-get update of the $suite sources failed (see $log)"
  (cd "$out/dl" && apt-get "${opts[@]}" source --download-only micropython >>"$log" 2>&1) \
    || fail "apt-get source micropython failed (see $log)"
  origs=("$out"/dl/micropython_*.orig.tar.*)
  [ -f "${origs[0]}" ] || fail "apt-get source left no micropython_*.orig.tar.* in $out/dl (see $log)"
  rm -rf "$src.new" && mkdir -p "$src.new"
  tar xf "${origs[0]}" -C "$src.new" --strip-components=1 || fail "could not unpack ${origs[0]}"
  rm -rf "$src" && mv "$src.new" "$src"
  echo "$suite" >"$src/.sigap-suite"
fi
[ "$(cat "$src/.sigap-suite" 2>/dev/null)" = "$suite" ] \
  || fail "$src holds another suite's source ($(cat "$src/.sigap-suite" 2>/dev/null || echo unknown)): remove $out to fetch $suite's"

# 3. Build. Debian's repack leaves out the micropython-lib submodule, which
# the build insists on seeing though neither manifest uses it.
nolib=$out/no-micropython-lib
mkdir -p "$nolib" && echo "none: the manifests here need no micropython-lib" >"$nolib/README.md"
make -C "$src/mpy-cross" -j2 >>"$log" 2>&1 || fail "building mpy-cross failed (see $log)"
# No FFI, btree, TLS or readline (not on a board, and their libraries are not
# installed for 32 bits); float16 off as Debian's i386 build does.
flags=(VARIANT=standard MICROPY_FORCE_32BIT=1 MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0
       MICROPY_USE_READLINE=0 MPY_LIB_DIR="$nolib" CFLAGS_EXTRA=-DMICROPY_FLOAT_USE_NATIVE_FLT16=0)
# make does not see changed flags: build afresh when they differ from the last build's.
if [ "$(cat "$out/.sigap-flags" 2>/dev/null)" != "${flags[*]}" ]; then
  rm -rf "$src"/ports/unix/build-sigap-*
  echo "${flags[*]}" >"$out/.sigap-flags"
fi
for kind in stock sigap; do
  make -C "$src/ports/unix" -j2 "${flags[@]}" FROZEN_MANIFEST="$top/tests/tools/unix_manifest_$kind.py" \
    BUILD="build-sigap-$kind" PROG="micropython-$kind" >>"$log" 2>&1 \
    || fail "building the unix port ($kind) failed (see $log)"
  cp "$src/ports/unix/build-sigap-$kind/micropython-$kind" "$out/micropython-$kind"
done
version=$("$out/micropython-stock" -c "import sys; print('.'.join(str(v) for v in sys.implementation.version[:3]))")
say "MicroPython $version unix port, 32-bit, from Debian's source package ($suite)"
cp "$src/mpy-cross/build/mpy-cross" "$out/mpy-cross"
echo "$out/micropython-stock"
echo "$out/micropython-sigap"
echo "$out/mpy-cross"
