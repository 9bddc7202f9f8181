"""Keep the course's repository URL in one place: ``repository: url:`` in ``_config.yml``; and each
notebook's Colab badge on the notebook itself.

    python scripts/set_repository.py           # write that URL into every copy that needs it
    python scripts/set_repository.py --check   # exit 1, listing them, if a copy differs (the tests)

The site's buttons read ``_config.yml`` directly. A notebook or page opened on Colab has no
``_config.yml`` around it, so its install cell (``pip install "dpo_ref @ git+URL"``) and its Colab
badge carry the URL themselves: this script writes them. To publish the course under another URL,
change the one line in ``_config.yml`` and run it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Where a page carries the URL: the install cell, `git clone`, and the Colab badge.
PATTERNS = [re.compile(r"(git\+|git clone )https://github\.com/[\w.-]+/[\w.-]+?(?=[\"'\s])"),
            re.compile(r"(colab\.research\.google\.com/github/)[\w.-]+/[\w.-]+(?=/blob/)")]
# A notebook's own Colab badge opens that notebook (renaming a file must not leave it on the old name).
OWN_BADGE = re.compile(r"(colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/)notebooks/[\w.-]+\.ipynb")


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def files() -> list[Path]:
    return sorted([*ROOT.glob("book/*.md"), *ROOT.glob("notebooks/*.ipynb"), ROOT / "README.md"])


def synced(text: str, url: str, path: Path) -> str:
    owner_repo = url.removeprefix("https://github.com/")
    text = PATTERNS[0].sub(lambda m: f"{m.group(1)}{url}", text)
    text = PATTERNS[1].sub(lambda m: f"{m.group(1)}{owner_repo}", text)
    if path.suffix == ".ipynb":
        text = OWN_BADGE.sub(lambda m: f"{m.group(1)}notebooks/{path.name}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail if a copy differs")
    args = parser.parse_args(argv)
    url = repository_url()
    if not url.startswith("https://github.com/"):
        raise SystemExit(f"_config.yml: repository url must be a https://github.com/OWNER/NAME URL, got {url}")
    stale = []
    for path in files():
        text = path.read_text()
        if synced(text, url, path) != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(synced(text, url, path))
    if args.check and stale:
        print(f"not at {url} (run python scripts/set_repository.py): {', '.join(map(str, stale))}")
        return 1
    print(f"{'updated' if stale else 'already at'} {url}: {len(stale) or len(files())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
