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
