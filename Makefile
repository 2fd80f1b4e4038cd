# pyquint: the two commands a fresh machine needs.
#   make demo   installs pyquint and runs the QUINT pipeline on the bundled sample sections
#   make test   installs pyquint (+ ImageJ where it can, as root) and runs the test suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
export OMP_WAIT_POLICY ?= passive
DEMO_OUT ?= demo_output

.PHONY: install install-dev install-imagej demo test lint bench luts macros

install:
	$(PIP) install -q -e .

install-dev:
	$(PIP) install -q -e '.[dev]'

# Debian's ImageJ 1.53t (ij.jar), a headless JRE and Xvfb for macro batch runs. Needs root
# (or sudo); elsewhere the ImageJ tests skip with a loud reason (CI sets PYQUINT_REQUIRE_IMAGEJ=1).
install-imagej:
	@if [ -e /usr/share/java/ij.jar ] && command -v java >/dev/null && command -v xvfb-run >/dev/null; then \
		echo "ImageJ, Java and Xvfb present"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			default-jre-headless libij-java xvfb xauth >/dev/null) || echo "WARNING: apt-get could not install ImageJ"; \
	else echo "WARNING: not root: install default-jre-headless libij-java xvfb xauth yourself for the ImageJ tests"; fi

demo: install
	pyquint demo --out $(DEMO_OUT)

test: install-dev install-imagej
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	$(PYTHON) -m ruff check pyquint tests benchmarks

bench: install-dev
	$(PYTHON) benchmarks/bench_pixel.py

luts: install
	pyquint lut make-glasbey --out pyquint/lut/tables

macros: install
	pyquint macro regenerate --out imagej_macros
