#!/usr/bin/env bash
# setup.sh - idempotent machine set-up for Datasphere (ds).
#
# Installs the Debian packages the build and tests need, then builds
# wolfSSL (with QUIC) and ngtcp2 (with its wolfSSL crypto helper) from
# Debian's own source packages, Debian patches applied, into a versioned
# prefix outside the clone.  A prefix that is already complete is reused,
# so running this again costs a few seconds.
#
# Environment:
#   DS_DEPS_PREFIX   where the QUIC stack is installed
#                    (default: /opt/datasphere-deps/wolfssl-5.5.4_ngtcp2-0.12.1)
#   DS_SKIP_APT=1    do not touch apt (packages must already be present)
#
# Prints the prefix on its last line of output.
set -euo pipefail

WOLFSSL_VER=5.5.4
NGTCP2_VER=0.12.1
STACK_ID="wolfssl-${WOLFSSL_VER}_ngtcp2-${NGTCP2_VER}"
PREFIX="${DS_DEPS_PREFIX:-/opt/datasphere-deps/${STACK_ID}}"

PKGS=(build-essential cmake pkg-config autoconf automake libtool dpkg-dev
      libuv1-dev libsodium-dev libmsgpack-dev liblmdb-dev libcmocka-dev
      libjansson-dev libcurl4-openssl-dev libstemmer-dev libunistring-dev
      sqlite3 libsqlite3-dev
      clang libclang-rt-14-dev python3 iproute2 procps)

log() { printf 'setup: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

need_pkgs=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || need_pkgs+=("$p")
done

ensure_deb_src() {
    if grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list \
       || grep -rqs '^deb-src ' /etc/apt/sources.list.d/ /etc/apt/sources.list; then
        return 1
    fi
    log "adding a deb-src entry for bookworm"
    $SUDO tee /etc/apt/sources.list.d/datasphere-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    return 0
}

stack_ready() {
    [ -f "$PREFIX/.complete" ] && [ -f "$PREFIX/lib/libwolfssl.a" ] \
        && [ -f "$PREFIX/lib/libngtcp2.a" ] && [ -f "$PREFIX/lib/libngtcp2_crypto_wolfssl.a" ]
}

if [ "${DS_SKIP_APT:-0}" != 1 ]; then
    updated=0
    if ! stack_ready && ensure_deb_src; then
        $SUDO apt-get update -qq; updated=1
    fi
    if [ ${#need_pkgs[@]} -gt 0 ]; then
        log "installing: ${need_pkgs[*]}"
        [ $updated = 1 ] || $SUDO apt-get update -qq
        updated=1
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${need_pkgs[@]}" >/dev/null
    fi
fi

if stack_ready; then
    log "QUIC stack present in $PREFIX"
    echo "$PREFIX"
    exit 0
fi

log "building wolfSSL ${WOLFSSL_VER} and ngtcp2 ${NGTCP2_VER} into $PREFIX"
if [ "${DS_SKIP_APT:-0}" != 1 ]; then
    if ensure_deb_src; then $SUDO apt-get update -qq; fi
    # apt-get source needs an index that knows the source packages.
    apt-cache showsrc wolfssl >/dev/null 2>&1 || $SUDO apt-get update -qq
fi
JOBS=$(nproc 2>/dev/null || echo 2)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ds-deps.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
apt-get source -qq "wolfssl=${WOLFSSL_VER}*" "ngtcp2=${NGTCP2_VER}*" >/dev/null 2>&1 \
    || apt-get source -qq wolfssl ngtcp2 >/dev/null
wsrc=$(find . -maxdepth 1 -type d -name "wolfssl-${WOLFSSL_VER}*" | head -1)
nsrc=$(find . -maxdepth 1 -type d -name "ngtcp2-${NGTCP2_VER}*" | head -1)
[ -n "$wsrc" ] && [ -n "$nsrc" ] || { log "source packages not found (wolfssl $WOLFSSL_VER, ngtcp2 $NGTCP2_VER)"; exit 1; }

STAGE="${PREFIX}.tmp.$$"
rm -rf "$STAGE"; mkdir -p "$STAGE"

( cd "$wsrc"
  [ -x configure ] || autoreconf -fi >/dev/null 2>&1
  ./configure -q --prefix="$STAGE" --enable-static --disable-shared --with-pic \
      --enable-quic --enable-ed25519 --enable-curve25519 --enable-certgen \
      --enable-session-ticket --enable-opensslextra --enable-aesni --enable-intelasm \
      --disable-examples --disable-crypttests --disable-benchmark >/dev/null
  make -s -j"$JOBS" >/dev/null 2>&1
  make -s install >/dev/null )
log "wolfSSL built"

( cd "$nsrc"
  [ -x configure ] || autoreconf -fi >/dev/null 2>&1
  PKG_CONFIG_PATH="$STAGE/lib/pkgconfig" ./configure -q --prefix="$STAGE" \
      --enable-static --disable-shared --with-pic --with-wolfssl --enable-lib-only \
      --without-openssl --without-gnutls --without-boringssl --without-picotls >/dev/null
  make -s -j"$JOBS" >/dev/null 2>&1
  make -s install >/dev/null )
log "ngtcp2 built"

# The prefix embeds its own path in .pc files; rewrite to the final place.
grep -rl "$STAGE" "$STAGE/lib/pkgconfig" 2>/dev/null | xargs -r sed -i "s#$STAGE#$PREFIX#g"
echo "wolfssl=${WOLFSSL_VER} ngtcp2=${NGTCP2_VER}" > "$STAGE/.complete"
$SUDO mkdir -p "$(dirname "$PREFIX")"
$SUDO rm -rf "$PREFIX"
$SUDO mv "$STAGE" "$PREFIX"
log "QUIC stack installed in $PREFIX"
echo "$PREFIX"
