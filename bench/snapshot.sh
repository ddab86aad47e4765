#!/usr/bin/env bash
# Export the rotator package of one commit (default HEAD) to a directory and print it, so a
# benchmark measures that commit even while the working tree is being edited:
#
#   PYTHONPATH=$(bench/snapshot.sh HEAD) .venv/bin/python bench/fleet.py --quick
#
# The snapshot is code only (rotator/ with its migrations inside, where the installed
# package has them); the venv's dependencies are used as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short "${1:-HEAD}")
dest="${TMPDIR:-/tmp}/rotator-snapshot-$commit"
if [ ! -d "$dest/rotator" ]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/rotator-snapshot.XXXXXX")
  git archive "$commit" rotator migrations | tar -x -C "$tmp"
  mv "$tmp/migrations" "$tmp/rotator/migrations"
  echo "$commit" > "$tmp/COMMIT"
  mv "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp"  # another run made it first: use that
fi
echo "$dest"
