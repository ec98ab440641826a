#!/bin/sh
# `make install` / `make uninstall`: montaged as a systemd service. The Makefile passes the
# variables (README, "Running as a systemd service"):
#   PREFIX       the virtualenv montaged is installed into; the unit starts PREFIX/bin/montaged
#   UNITDIR      where montaged.service goes
#   SYSCONFDIR   SYSCONFDIR/montaged/config.toml (written only if none exists, never removed),
#                SYSCONFDIR/sysusers.d/montaged.conf, SYSCONFDIR/tmpfiles.d/montaged.conf
#   NO_SYSTEMCTL 1: do not run systemctl, systemd-sysusers or systemd-tmpfiles (packaging, tests)
#   DESTDIR      stage everything under DESTDIR (packaging): files name PREFIX, not DESTDIR/PREFIX,
#                and work once DESTDIR/PREFIX is moved to PREFIX. Implies NO_SYSTEMCTL=1.
#   PYTHON       the interpreter the virtualenv is made from (3.11+)
# For tests only: MONTAGED_INSTALL_SITE_PACKAGES, a site-packages folder (the test venv's) that
# the new virtualenv also reads, so pip finds every dependency already installed and fetches
# nothing. A real install never sets it.
set -eu

action=${1:?usage: install.sh install|uninstall}
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
: "${PREFIX:?}" "${UNITDIR:?}" "${SYSCONFDIR:?}" "${PYTHON:=python3}" "${NO_SYSTEMCTL:=}" "${DESTDIR:=}"

for dir in "$PREFIX" "$UNITDIR" "$SYSCONFDIR" ${DESTDIR:+"$DESTDIR"}; do
  case $dir in
    /*) ;;
    *) echo "install.sh: $dir is not an absolute path (PREFIX, UNITDIR, SYSCONFDIR and DESTDIR must be)" >&2; exit 2 ;;
  esac
done
if [ -n "$DESTDIR" ]; then
  NO_SYSTEMCTL=1
fi

venv=$DESTDIR$PREFIX
unit=$DESTDIR$UNITDIR/montaged.service
confdir=$DESTDIR$SYSCONFDIR/montaged
config=$confdir/config.toml
sysusers=$DESTDIR$SYSCONFDIR/sysusers.d/montaged.conf
tmpfiles=$DESTDIR$SYSCONFDIR/tmpfiles.d/montaged.conf
SHIPPED_EXEC='ExecStart=/opt/montaged/bin/montaged run'

systemctl_wanted() { [ "$NO_SYSTEMCTL" != 1 ]; }

# A file is replaced whole (temporary name, then mv), never left half-written.
put() {  # put MODE DEST < content
  mkdir -p "$(dirname "$2")"
  tmp=$(mktemp "$2.XXXXXX")
  cat > "$tmp"
  chmod "$1" "$tmp"
  mv -f "$tmp" "$2"
}

is_our_venv() {
  [ -f "$venv/pyvenv.cfg" ] && [ -x "$venv/bin/python" ]
}

# Staged with DESTDIR: the scripts' #! lines and the venv's own notes name DESTDIR/PREFIX, and
# the compiled modules carry it as their file name (tracebacks would show it). Rewrite them
# to name PREFIX.
unstage() {
  grep -rlI -F "$venv" "$venv/bin" "$venv/pyvenv.cfg" | while IFS= read -r f; do
    sed "s|$venv|$PREFIX|g" "$f" > "$f.unstage" && chmod --reference="$f" "$f.unstage" && mv -f "$f.unstage" "$f"
  done
  "$venv/bin/python" -m compileall -q -f -s "$DESTDIR" "$venv/lib" >/dev/null
}

do_install() {
  if [ -e "$venv" ] && ! is_our_venv && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
    echo "install.sh: $venv exists and is not a virtualenv: refusing to install into it" >&2
    exit 1
  fi
  if ! "$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: $PYTHON is not Python 3.11+ with the venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  echo "virtualenv: $venv"
  "$PYTHON" -m venv "$venv"
  pip_opts="--quiet --disable-pip-version-check --no-warn-script-location"
  if [ -n "${MONTAGED_INSTALL_SITE_PACKAGES:-}" ]; then
    # Tests: the dependencies come from the test venv (montaged itself is built and copied).
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '%s\n' "$MONTAGED_INSTALL_SITE_PACKAGES" > "$site/montaged-install-test.pth"
  fi
  # Built from a copy of what the package is made of, so a `sudo make install` leaves no
  # root-owned build/ or *.egg-info in the clone, and nothing stale from an earlier build.
  # A copy, not an editable install: the service must not depend on this source tree.
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  cp -R "$src/pyproject.toml" "$src/README.md" "$src/montaged" "$build/"
  find "$build" -name __pycache__ -prune -exec rm -rf {} +
  # --upgrade: a second `make install` replaces the installed montaged with this tree's.
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install $pip_opts --upgrade "$build"
  if [ -n "$DESTDIR" ]; then
    unstage
  fi
  "$venv/bin/python" -m montaged --version >/dev/null

  # The unit, with ExecStart pointed at this PREFIX.
  if [ "$(grep -c -x -F "$SHIPPED_EXEC" "$here/montaged.service")" != 1 ]; then
    echo "install.sh: systemd/montaged.service does not hold '$SHIPPED_EXEC' exactly once" >&2
    exit 1
  fi
  echo "unit: $unit"
  sed "s|^$SHIPPED_EXEC\$|ExecStart=$PREFIX/bin/montaged run|" "$here/montaged.service" | put 0644 "$unit"
  put 0644 "$sysusers" < "$here/montaged.sysusers.conf"
  put 0644 "$tmpfiles" < "$here/montaged.tmpfiles.conf"

  # The configuration: a default with the system paths, only if there is none yet.
  if [ -e "$config" ]; then
    echo "config: kept the existing $config"
  else
    echo "config: $config (the system paths; edit it, then: montaged config check $SYSCONFDIR/montaged/config.toml)"
    mkdir -p "$confdir"
    sed -e 's|^watch = \["ingest"\]$|watch = ["/srv/ingest"]|' \
        -e 's|^output = "previews"$|output = "/srv/previews"|' \
        -e 's|^state = ".montaged-state"$|state = "/var/lib/montaged"|' \
        "$src/config.example.toml" | put 0644 "$config"
  fi

  if systemctl_wanted; then
    systemd-sysusers "$sysusers"
    systemd-tmpfiles --create "$tmpfiles"
    systemctl daemon-reload
    echo "installed. Start it now and at every boot: systemctl enable --now montaged"
  else
    echo "installed (NO_SYSTEMCTL=1: systemd-sysusers, systemd-tmpfiles and systemctl daemon-reload not run)"
  fi
}

do_uninstall() {
  if systemctl_wanted && [ -e "$unit" ]; then
    systemctl disable --now montaged.service || true
  fi
  for f in "$unit" "$sysusers" "$tmpfiles"; do
    if [ -e "$f" ]; then
      rm -f "$f"
      echo "removed $f"
    fi
  done
  if is_our_venv; then
    rm -rf "$venv"
    echo "removed $venv"
  elif [ -e "$venv" ]; then
    echo "left $venv: it is not a virtualenv that make install made" >&2
  fi
  if systemctl_wanted; then
    systemctl daemon-reload
  fi
  if [ -e "$config" ]; then
    echo "kept $config: it may hold your changes (delete it yourself if you no longer need it)"
  fi
  echo "kept the state directory (/var/lib/montaged by default), the user montaged and the ingest and output roots"
}

case $action in
  install) do_install ;;
  uninstall) do_uninstall ;;
  *) echo "usage: install.sh install|uninstall" >&2; exit 2 ;;
esac
