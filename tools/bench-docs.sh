#!/usr/bin/env bash
# Regenerates docs/bench-report.md and docs/img/*.png from the result files in docs/data/
# (copy new results there first). Needs edgeguard installed with the bench extra.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Order: native results first (the report's baseline), then emulated ones.
mapfile -t files < <(ls "$root"/docs/data/*native*.json; ls "$root"/docs/data/*emulated*.json)
"$py" -m edgeguard.bench report "${files[@]}" --out "$tmp"
mkdir -p "$root/docs/img"
cp "$tmp"/*.png "$root/docs/img/"
sed -E 's#\]\(([a-z0-9-]+\.png)\)#](img/\1)#' "$tmp/report.md" >"$root/docs/bench-report.md"
for f in "$root"/docs/img/*.png; do
  size=$(stat -c %s "$f")
  ((size < 200000)) || { echo "$f is $size bytes (keep docs images < 200 KB)" >&2; exit 1; }
done
echo "docs: wrote docs/bench-report.md and docs/img/ from ${#files[@]} result files"
