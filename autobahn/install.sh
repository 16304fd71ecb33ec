#!/usr/bin/env bash
# Idempotent installer for Autobahn's `wstest` (autobahntestsuite, Python 2.7 only).
#
# Venv: ${WSMIO_CACHE:-$HOME/.cache/wsmio}/autobahn-venv (reused when wstest works).
# Needs: pyenv with Python 2.7.18, a C compiler (wsaccel is built from source),
# and access to PyPI through pip. Any missing piece is a hard error.
# Progress goes to stderr; stdout is only the path of the working wstest.
set -euo pipefail

WSTEST_VERSION=25.10.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSTRAINTS="$HERE/wstest-constraints.txt"
CACHE="${WSMIO_CACHE:-$HOME/.cache/wsmio}"
VENV="$CACHE/autobahn-venv"
WSTEST="$VENV/bin/wstest"

die() { echo "autobahn/install.sh: ERROR: $*" >&2; exit 1; }
log() { echo "autobahn/install.sh: $*" >&2; }

# True when the venv's wstest runs and is the pinned version.
wstest_ok() {
    [ -x "$WSTEST" ] && "$WSTEST" -a 2>/dev/null | grep -qx "AutobahnTestSuite $WSTEST_VERSION"
}

if wstest_ok; then
    log "reusing $WSTEST (AutobahnTestSuite $WSTEST_VERSION)"
    echo "$WSTEST"
    exit 0
fi

# --- Python 2.7.18 from pyenv -------------------------------------------------
command -v pyenv >/dev/null 2>&1 || die "pyenv not found on PATH (need pyenv's Python 2.7.18)"
PY27="$(pyenv root)/versions/2.7.18/bin/python"
[ -x "$PY27" ] || die "$PY27 missing; install it with: pyenv install 2.7.18"
"$PY27" -c 'import sys; assert sys.version_info[:3] == (2, 7, 18)' \
    || die "$PY27 is not a working Python 2.7.18"
[ -f "$CONSTRAINTS" ] || die "missing $CONSTRAINTS"

# pip for python2 (bootstrap with ensurepip if absent).
if ! "$PY27" -m pip --version >/dev/null 2>&1; then
    log "bootstrapping pip for $PY27 with ensurepip"
    "$PY27" -m ensurepip >&2 || die "ensurepip failed for $PY27"
    "$PY27" -m pip --version >/dev/null 2>&1 || die "pip still unavailable for $PY27"
fi

# virtualenv < 20.22 (the last series that can create Python 2 environments).
if ! "$PY27" -c 'import virtualenv' >/dev/null 2>&1; then
    log "installing virtualenv<20.22 into $PY27"
    "$PY27" -m pip install -q 'virtualenv<20.22' >&2 || die "pip install 'virtualenv<20.22' failed"
fi

# --- fresh venv + autobahntestsuite -------------------------------------------
# Anything already at $VENV failed the wstest check above: start over.
log "creating venv at $VENV"
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PY27" -m virtualenv -q "$VENV" >&2 || die "virtualenv failed to create $VENV"

log "installing autobahntestsuite==$WSTEST_VERSION (constraints: $CONSTRAINTS)"
"$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "autobahntestsuite==$WSTEST_VERSION" >&2 \
    || die "pip install autobahntestsuite==$WSTEST_VERSION failed (see pip output above)"

wstest_ok || die "wstest installed at $WSTEST but 'wstest -a' does not report AutobahnTestSuite $WSTEST_VERSION"
log "installed $WSTEST"
echo "$WSTEST"
