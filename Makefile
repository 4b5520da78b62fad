# Two commands set everything up on a fresh Debian machine (as root):
#   make demo   transfers the bundled sample pair and prints where the result is
#   make test   runs ruff check (make lint), then the test suite (the napari tests under Xvfb);
#               make test QT=pyqt6 runs them with PyQt6 instead of PyQt5
# While developing: make test-fast runs the tests not marked slow, napari or train (no Xvfb).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH := torch==2.14.1 torchvision==0.29.1
SYSTEM_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 libdbus-1-3 libfontconfig1
DEMO_OUT := demo-output/result.jpg
QT ?= pyqt5
QT_PACKAGE_pyqt5 := PyQt5>=5.15
QT_PACKAGE_pyqt6 := PyQt6>=6.5

.PHONY: demo lint test test-fast system venv clean

demo: $(VENV)/.installed
	$(VENV)/bin/histocolor transfer resources/samples/source.jpg resources/samples/reference.jpg -o $(DEMO_OUT) --overwrite \
		&& echo "demo result (analogy, the shipped network): $(abspath $(DEMO_OUT))"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# napari needs an X server even offscreen (a virtual one, Xvfb) and a private runtime folder.
test: lint $(VENV)/.installed $(VENV)/.qt-$(QT)
	export XDG_RUNTIME_DIR=$$(mktemp -d) && chmod 700 $$XDG_RUNTIME_DIR \
		&& QT_API=$(QT) PYTEST_QT_API=$(QT) $$(command -v xvfb-run >/dev/null && echo xvfb-run -a) $(PY) -m pytest -q tests

# The markers are registered in pyproject.toml ([tool.pytest.ini_options]).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not napari and not train" tests

$(VENV)/.qt-%: $(VENV)/.installed
	$(PIP) install -q "$(QT_PACKAGE_$*)"
	touch $@

# System libraries Qt needs under Xvfb (the napari widgets and their tests).
system:
	@if command -v apt-get >/dev/null && ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml | system
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) demo-output
