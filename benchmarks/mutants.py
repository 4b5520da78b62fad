"""Mutation check of the test suite (a developer tool, not run in CI).

Runs the suite with one part of histocolor replaced by "do nothing", to list the tests that
notice. Every claim about the network or a classical method needs at least one test that
fails here. Results are recorded in docs/TESTING.md.

    HISTOCOLOR_MUTANT=ctn-identity PYTHONPATH=benchmarks .venv/bin/python -m pytest -p mutants -q tests

Mutants:
    network-identity: the whole model returns its source (no alignment, no CTN).
    ctn-identity: the CTN returns what it is given: the model is its alignment alone (as
        with the CTN's residual heads at zero).
    classical-identity: Reinhard, MKL, histogram matching and IDT return their input.

Only this process is mutated: tests that start histocolor in a subprocess (the module entry
point, torchrun) run the real code.
"""

import os

MUTANTS = ("network-identity", "ctn-identity", "classical-identity")


def _network_identity():
    from histocolor.model.analogy import HistogramAnalogy
    from histocolor.model.ctn import CTNOutput

    def forward(self, source_lab, reference_lab, *args, **kwargs):
        return CTNOutput(source_lab + 0.0 * sum(p.sum() for p in self.parameters()), [], None)

    HistogramAnalogy.forward = forward


def _ctn_identity():
    from histocolor.model.ctn import ColorTransferNet, CTNOutput

    def forward(self, source, condition, original=None):
        return CTNOutput(source + 0.0 * sum(p.sum() for p in self.parameters()), [])

    ColorTransferNet.forward = forward


def _classical_identity():
    import numpy as np

    from histocolor.classical import _check_pixels, _Mapping

    def call(self, pixels):
        return np.clip(_check_pixels(pixels, "input", allow_empty=True).astype(np.float32), 0.0, 1.0)

    _Mapping.__call__ = call


def pytest_configure(config):
    mutant = os.environ.get("HISTOCOLOR_MUTANT", "")
    if mutant not in MUTANTS:
        raise SystemExit(f"set HISTOCOLOR_MUTANT to one of {', '.join(MUTANTS)}, got {mutant!r}")
    {"network-identity": _network_identity, "ctn-identity": _ctn_identity,
     "classical-identity": _classical_identity}[mutant]()
    print(f"mutant: {mutant}")
