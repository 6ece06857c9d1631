#!/usr/bin/env bash
# Installs the build into a scratch prefix and uses it as a program outside
# the tree would: a client-only program and a router-embedding one, each
# built with pkg-config alone and with find_package(switchboard), against
# the shared and the static libraries, then run. Also checks that
# libswitchboard-client and a client-only program depend on neither
# liburing nor ck, that each shared library exports exactly the sb_
# functions of its headers, and that no consumer is handed ck's
# -D__x86_64__ or this machine's library paths.
set -euo pipefail
build=$1 src=$2 cc=$3 san=${4:-}
prefix=$build/install-check
out=$prefix/consumers
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
mkdir -p "$out"
pcdir=$(find "$prefix" -name switchboard-client.pc -printf '%h\n' | head -1)
libdir=$(dirname "$pcdir")
incdir=$(dirname "$(find "$prefix" -path '*/switchboard/client.h' -printf '%h\n' | head -1)")

fail() {
	echo "install: $*" >&2
	exit 1
}

# ---- pkg-config --------------------------------------------------------------
export PKG_CONFIG_PATH=$pcdir
version=$(pkg-config --modversion switchboard-client)
# Written at install time: the prefix installed to, not the configured one.
[ "$(pkg-config --variable=prefix switchboard)" = "$prefix" ] ||
	fail "switchboard.pc names prefix $(pkg-config --variable=prefix switchboard), not $prefix"
cflags=$(pkg-config --cflags switchboard switchboard-client)
[[ $cflags != *-D* ]] || fail "pkg-config hands consumers a macro: $cflags"
# Static: our two libraries as archives, everything else as pkg-config says.
static_libs() {
	local w libs=()
	for w in $(pkg-config --libs --static "$1"); do
		case $w in
		-lswitchboard) libs+=("$libdir/libswitchboard.a") ;;
		-lswitchboard-client) libs+=("$libdir/libswitchboard-client.a") ;;
		*) libs+=("$w") ;;
		esac
	done
	echo "${libs[@]}"
}
warn="-Wall -Wextra -Werror"
for kind in client router; do
	pkg=switchboard
	[ $kind = client ] && pkg=switchboard-client
	# shellcheck disable=SC2086 # word splitting of flag lists is meant
	"$cc" $san $warn $cflags "$src/${kind}_consumer.c" -o "$out/pc-$kind-shared" \
		$(pkg-config --libs $pkg)
	# shellcheck disable=SC2086
	"$cc" $san $warn $cflags "$src/${kind}_consumer.c" -o "$out/pc-$kind-static" \
		$(static_libs $pkg)
	LD_LIBRARY_PATH=$libdir "$out/pc-$kind-shared"
	"$out/pc-$kind-static"
done

# ---- find_package(switchboard) -----------------------------------------------
if grep -rqe '__x86_64__' -e '/usr/lib' "$libdir/cmake/switchboard"; then
	fail "the CMake package names ck's flags or this machine's paths: $(grep -rle '__x86_64__' -e '/usr/lib' "$libdir/cmake/switchboard")"
fi
cmake -S "$src" -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_C_FLAGS="$san $warn" -DCMAKE_EXE_LINKER_FLAGS="$san" -DSB_VERSION="$version" \
	>"$out/cmake.log" 2>&1 || fail "find_package(switchboard) failed: $(cat "$out/cmake.log")"
cmake --build "$out/cmake" >"$out/cmake-build.log" 2>&1 ||
	fail "building against the CMake targets failed: $(cat "$out/cmake-build.log")"
# No LD_LIBRARY_PATH: CMake gives the shared ones an RPATH to the package.
for exe in client-shared client-static router-shared router-static; do
	"$out/cmake/$exe"
done

# ---- dependencies --------------------------------------------------------------
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
needed "$libdir/libswitchboard.so" | grep -q '^liburing\.' ||
	fail "libswitchboard.so does not need liburing: the checks below could not fail"
for f in "$libdir/libswitchboard-client.so" "$out/pc-client-shared" "$out/pc-client-static" \
	"$out/cmake/client-shared" "$out/cmake/client-static"; do
	if needed "$f" | grep -E '^lib(uring|ck)\.'; then
		fail "$f needs liburing or ck"
	fi
	if LD_LIBRARY_PATH=$libdir ldd "$f" | grep -E 'lib(uring|ck)\.'; then
		fail "$f loads liburing or ck"
	fi
done

# ---- exported symbols ----------------------------------------------------------
# The functions a header declares (comments and macros gone), and those a
# shared library exports.
declared() {
	"$cc" -E -P -I"$incdir" "$incdir/switchboard/$1" |
		grep -oE '\bsb_[a-z0-9_]+ *\(' | sed -E 's/ *\($//' | sort -u
}
exported() { nm -D --defined-only "$1" | awk '{print $NF}' | sort -u; }
client_api=$(declared client.h) # with proto.h and error.h, which it includes
router_api=$(comm -23 <(declared router.h) <(echo "$client_api"))
if ! diff <(echo "$client_api") <(exported "$libdir/libswitchboard-client.so") >"$out/diff"; then
	fail "libswitchboard-client.so exports other than client.h, proto.h and error.h declare (< declared, > exported): $(cat "$out/diff")"
fi
if ! diff <(echo "$router_api") <(exported "$libdir/libswitchboard.so") >"$out/diff"; then
	fail "libswitchboard.so exports other than router.h's own functions (< declared, > exported): $(cat "$out/diff")"
fi

echo "install: $version; pkg-config and find_package consumers of both libraries, shared and static, ran; the client needs neither liburing nor ck; exports match the headers"
