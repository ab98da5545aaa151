# Creates .venv with Python >= 3.11 and installs the project with its dev extras, once per
# change of pyproject.toml (a stamp file remembers what was installed).
ensure_venv() {
  local python="${PYTHON:-}"
  if [[ -z "$python" ]]; then
    for candidate in python3.13 python3.12 python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1 &&
         "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"; break
      fi
    done
  fi
  if [[ -z "$python" ]]; then
    echo "error: Python 3.11 or newer is needed; install it (e.g. apt-get install python3) and retry" >&2
    exit 1
  fi
  if [[ ! -x .venv/bin/python ]]; then
    echo "creating .venv with $("$python" --version)"
    "$python" -m venv .venv
  fi
  local stamp=.venv/.cfd-installed
  local want
  want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "installing CFD Broker and its dependencies into .venv …"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}
