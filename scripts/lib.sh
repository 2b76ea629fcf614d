# Shared by the scripts.

# venv_for REQUIREMENTS DIR: make DIR a virtual environment with REQUIREMENTS installed, once;
# when the requirements file changes, install into the existing environment again.
# PYTHON chooses the interpreter that creates it (default: python3). Returns non-zero when it
# cannot (callers without set -e, such as scripts/test, go on with the other environments).
venv_for() {
  local requirements=$1 dir=$2 python=${PYTHON:-python3}
  if [ -x "$dir/bin/python" ] && cmp -s "$requirements" "$dir/.requirements"; then
    return 0
  fi
  echo "== installing $requirements into $dir" >&2
  [ -x "$dir/bin/python" ] || "$python" -m venv "$dir" || return 1
  if ! "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >"$dir/.pip.log" 2>&1; then
    cat "$dir/.pip.log" >&2
    return 1
  fi
  "$dir/bin/python" -m pip check >/dev/null || return 1
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

# need_packages PACKAGE...: install, in one apt run, those Debian PACKAGEs that are not installed
# (as root with apt only; otherwise the tests that need them report a skip, or fail in CI).
# NAME/SUITE takes NAME from SUITE; a missing *-backports suite is first added on the mirror and
# with the keyring that the machine's own Debian sources already use.
need_packages() {
  local missing=() package name suite
  for package in "$@"; do
    name=${package%%/*}
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
  done
  [ ${#missing[@]} = 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "== missing Debian packages ${missing[*]}, not installable here: the tests that need them will be skipped" >&2
    return 0
  fi
  for package in "${missing[@]}"; do
    suite=${package#*/}
    if [ "$suite" != "$package" ] && [ "${suite%-backports}" != "$suite" ]; then
      add_backports "$suite" || true   # then apt says the package is not found, and the tests say why
    fi
  done
  echo "== installing ${missing[*]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}"; } >/dev/null 2>&1 \
    || echo "== could not install ${missing[*]}: the tests that need them will be skipped" >&2
}

# add_backports SUITE (e.g. bookworm-backports): an apt sources entry for SUITE on the URI and
# keyring of the machine's existing entry for the release (deb822 .sources or one-line .list).
add_backports() {
  local suite=$1 release=${1%-backports} uri keyring
  grep -rqsE "(^|[[:space:]])$suite([[:space:]]|$)" /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
  read -r uri keyring < <(awk -v rel="$release" '
    FNR == 1 { if (hit && !done) { print uri, key; done = 1 } uri = key = ""; hit = 0 }
    /^URIs:/ { uri = $2 } /^Signed-By:/ { key = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == rel) hit = 1 }
    /^[[:space:]]*$/ { if (hit && !done) { print uri, key; done = 1 } uri = key = ""; hit = 0 }
    /^deb[[:space:]]/ && !done {
      k = ""; u = ""; s = ""
      for (i = 2; i <= NF; i++) {
        if ($i ~ /^\[/) { while ($i !~ /\]$/) { if ($i ~ /signed-by=/) k = $i; i++ } if ($i ~ /signed-by=/) k = $i; continue }
        if (u == "") u = $i; else if (s == "") s = $i
      }
      if (s == rel) { sub(/.*signed-by=/, "", k); sub(/\]$/, "", k); print u, k; done = 1 }
    }
    END { if (hit && !done) print uri, key }
  ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null) || true
  if [ -z "$uri" ]; then
    echo "== no apt source for $release found: cannot add $suite" >&2
    return 1
  fi
  echo "== adding apt suite $suite on $uri" >&2
  printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n%s' "$uri" "$suite" \
    "${keyring:+Signed-By: $keyring
}" >"/etc/apt/sources.list.d/$suite.sources"
}
