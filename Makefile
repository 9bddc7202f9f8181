# Two entry points, each sets up .venv first (see README).
PY := .venv/bin/python

.venv/.ready: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

_vendor/mathjax/tex-mml-chtml.js: scripts/mathjax.sh
	bash scripts/mathjax.sh

.PHONY: book test toy clean
book: .venv/.ready _vendor/mathjax/tex-mml-chtml.js  ## build the course site, executing every page and notebook on the offline toy model
	$(PY) -m dpo_ref toy
	$(PY) scripts/build_book.py  # pages executed two at a time into the cache, then jupyter-book build

test: .venv/.ready _vendor/mathjax/tex-mml-chtml.js  ## run the test suite (builds the toy model once, about a minute)
	$(PY) -m pytest -q

clean:
	rm -rf _build
