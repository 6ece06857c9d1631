#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds a program against it
# with pkg-config alone, linked once to the shared and once to the static library.
set -euo pipefail
build=$1 src=$2 cc=$3 san=${4:-}
prefix=$build/install-check
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name switchboard.pc -printf '%h\n' | head -1)
export PKG_CONFIG_PATH=$libdir
# The .pc file carries the configure-time prefix; point it at the scratch one.
cflags=$(pkg-config --define-variable=prefix="$prefix" --cflags switchboard)
libs=$(pkg-config --define-variable=prefix="$prefix" --libs switchboard)
static_libs=$(pkg-config --define-variable=prefix="$prefix" --libs --static switchboard)
"$cc" $san $cflags "$src/consumer.c" -o "$prefix/consumer-shared" $libs
LD_LIBRARY_PATH=$(dirname "$libdir") "$prefix/consumer-shared"
"$cc" $san $cflags "$src/consumer.c" -o "$prefix/consumer-static" \
	-Wl,-Bstatic -lswitchboard -Wl,-Bdynamic ${static_libs/-lswitchboard/}
"$prefix/consumer-static"
test -f "$(dirname "$libdir")/cmake/switchboard/switchboardConfig.cmake"
echo "install: pkg-config and CMake package usable"
