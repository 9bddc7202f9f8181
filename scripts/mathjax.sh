#!/usr/bin/env bash
# Put MathJax 3 under _vendor/mathjax (served as _static/mathjax) so the site typesets math without reaching a CDN
# (the build machines are offline; readers of a local build may be too). From the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --silent --no-audit --no-fund --prefix .cache/npm mathjax@3 >/dev/null
src=.cache/npm/node_modules/mathjax/es5
dst=_vendor/mathjax
rm -rf "$dst"
mkdir -p "$dst/output/chtml/fonts" "$dst/input/tex"
cp "$src/tex-mml-chtml.js" "$dst/"
cp -r "$src/output/chtml/fonts/woff-v2" "$dst/output/chtml/fonts/"
cp -r "$src/input/tex/extensions" "$dst/input/tex/"
cp -r "$src/a11y" "$src/ui" "$dst/"
