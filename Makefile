# Two entry points, each sets up .venv first (see README).
PY := .venv/bin/python

.venv/.ready: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

_vendor/mathjax/tex-mml-chtml.js: scripts/mathjax.sh
	bash scripts/mathjax.sh

.PHONY: book test test-fast toy clean
book: .venv/.ready _vendor/mathjax/tex-mml-chtml.js  ## build the course site, executing every page and notebook on the offline toy model
	$(PY) -m dpo_ref toy
	$(PY) scripts/build_book.py  # pages executed two at a time into the cache, then jupyter-book build

test: .venv/.ready _vendor/mathjax/tex-mml-chtml.js  ## run the test suite (builds the toy model once; README: measured times)
	$(PY) -m pytest -q

test-fast: .venv/.ready  ## the quick tier: no book, no notebooks, no slow tests, a toy built in seconds
	DPO_TEST_TOY_STEPS=60 $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf _build
