#!/usr/bin/env bash
# Copy the bundled example project into DEST as a fresh git repository (nightowl works on git repos).
# --history: build it with its real history instead (29 commits ending at the same files; see
# examples/calculator_history.py), whose last weeks `nightowl bench-history` turns into held-out tasks.
set -euo pipefail
dest=${1:?usage: examples/make_example_repo.sh DEST [--history]}
src=$(cd "$(dirname "$0")/calculator" && pwd)
if [ -e "$dest" ]; then echo "error: $dest already exists; pick a new directory" >&2; exit 2; fi
if [ "${2:-}" = "--history" ]; then
  exec python3 "$(dirname "$0")/calculator_history.py" "$dest"
fi
mkdir -p "$dest"
cp "$src"/calc.py "$src"/test_calc.py "$dest"/
cd "$dest"
git init -q -b main
git add -A
git -c user.name=nightowl -c user.email=nightowl@localhost commit -qm "calculator example"
echo "example repository ready at $dest"
