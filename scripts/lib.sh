# Shared by the scripts.

# venv_for REQUIREMENTS DIR: make DIR a virtual environment with REQUIREMENTS installed, once;
# when the requirements file changes, install into the existing environment again.
# PYTHON chooses the interpreter that creates it (default: python3).
venv_for() {
  local requirements=$1 dir=$2 python=${PYTHON:-python3}
  if [ -x "$dir/bin/python" ] && cmp -s "$requirements" "$dir/.requirements"; then
    return 0
  fi
  echo "== installing $requirements into $dir" >&2
  [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
  if ! "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >"$dir/.pip.log" 2>&1; then
    cat "$dir/.pip.log" >&2
    return 1
  fi
  "$dir/bin/python" -m pip check >/dev/null
  cp "$requirements" "$dir/.requirements"
}

# need_command COMMAND PACKAGE: install the Debian PACKAGE when COMMAND is missing (CI runs as
# root on a clean machine). Without root or apt, the tests that need it report a skip.
need_command() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing $2 (for $1)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >/dev/null 2>&1 \
      || echo "== could not install $2: tests that need $1 will be skipped" >&2
  else
    echo "== $1 is missing and cannot be installed here: tests that need it will be skipped" >&2
  fi
}
