# Shared by the scripts: build a virtual environment once per requirements file.
# venv_for REQUIREMENTS DIR: DIR holds a venv with exactly REQUIREMENTS installed.
venv_for() {
  local requirements=$1 dir=$2 python=${PYTHON:-python3}
  if [ -x "$dir/bin/python" ] && cmp -s "$requirements" "$dir/.requirements"; then
    return 0
  fi
  echo "== installing $requirements into $dir (once)" >&2
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$dir/.requirements"
}
