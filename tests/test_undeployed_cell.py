"""A cell that cannot be deployed, as a user meets it on a real sandbox: one error with the reason (at once, not
after the deploy timeout), its other tests skipped as not deployed, and the run's other cells unaffected."""

from __future__ import annotations

import time

import pytest

HOST_PATH_VALUES = """\
# A pod volume the sandbox does not emulate (the chart's volumes replaced by a hostPath one).
podTemplate:
  merge:
    spec:
      volumes:
      - name: host
        hostPath:
          path: /var
"""

TESTS = """
def test_first(natsnet_cell):
    pass


def test_second(natsnet_cell):
    pass


def test_third(natsnet_deployment):
    pass
"""


@pytest.fixture
def sandbox_collectable() -> None:
    from pytest_natsnet.providers.sandbox_provider import missing_requirements

    problems = missing_requirements()
    if problems:
        pytest.skip(f"sandbox requirements missing: {'; '.join(problems)}")


def test_an_undeployable_cell_is_one_error_and_its_other_tests_say_not_deployed(
    pytester: pytest.Pytester, sandbox_collectable: None
) -> None:
    (pytester.path / "cells").mkdir()
    (pytester.path / "cells" / "host-path.yaml").write_text(HOST_PATH_VALUES)
    pytester.makepyfile(test_cells=TESTS)
    started = time.monotonic()
    result = pytester.runpytest("--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
                                "-p", "no:cacheprovider", "--natsnet-values-dir=cells", "-rs",
                                "--natsnet-scenario=host-path", "--natsnet-scenario=default",
                                "--natsnet-timeout=600", "test_cells.py")
    seconds = time.monotonic() - started
    result.assert_outcomes(passed=3, errors=1, skipped=2)
    out = result.stdout.str()
    errors = [line for line in out.splitlines() if line.startswith("cell host-path could not be deployed (evidence: ")]
    assert len(errors) == 1, out[-3000:]
    assert errors[0].endswith('-host-path: nats-0, nats-1, nats-2: VolumeNotEmulated: volume "host" of type '
                              "hostPath is not emulated by the sandbox (it has configMap, secret, emptyDir, "
                              "persistentVolumeClaim): run this cell on kind")
    assert "During handling" not in out
    result.stdout.re_match_lines([r"SKIPPED \[2\] .*: cell host-path not deployed \(the cell's first test has "
                                  r"the error\)"])
    assert seconds < 300, f"the error took {seconds:.0f} s: it should come at once, not at the 600 s deploy timeout"
