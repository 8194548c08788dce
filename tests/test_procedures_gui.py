"""A procedure runs in pymeasure's own GUI window unchanged (issue 15): `ManagedWindow` with its
Manager and Worker, offscreen (Qt's offscreen platform), into a Results file pymeasure reads."""

from __future__ import annotations

import logging
import os
import sys
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pymeasure.display.Qt import QtWidgets  # noqa: E402
from pymeasure.display.windows import ManagedWindow  # noqa: E402
from pymeasure.experiment import Procedure, Results  # noqa: E402

from ionclock.procedures.ac_field import AcFieldProcedure  # noqa: E402
from ionclock.procedures.base import procedures  # noqa: E402
from tests.test_procedures import SIM  # noqa: E402


@pytest.fixture(autouse=True)
def _no_handlers_left_behind():
    """A ManagedWindow hangs its log widget's Qt handler on the loggers; once the window is
    gone every later log call in the session raises ("wrapped C/C++ object ... deleted").
    Whatever handlers a test added are taken off again."""
    loggers = [logging.getLogger(), *(logging.getLogger(name)
                                      for name in list(logging.root.manager.loggerDict))]
    before = {id(lg): list(lg.handlers) for lg in loggers}
    yield
    for lg in [logging.getLogger(), *(logging.getLogger(name)
                                      for name in list(logging.root.manager.loggerDict))]:
        keep = before.get(id(lg), [])
        for handler in list(lg.handlers):
            if handler not in keep:
                lg.removeHandler(handler)


@pytest.fixture(scope="module")
def app():
    """One QApplication for the module, kept referenced (a dropped one is deleted at once)."""
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv)


def test_every_procedure_builds_its_managed_window(app):
    for name, cls in sorted(procedures().items()):
        inputs = list(cls().parameter_objects())
        window = ManagedWindow(procedure_class=cls, inputs=inputs, displays=inputs,
                               x_axis=cls.DATA_COLUMNS[0], y_axis=cls.DATA_COLUMNS[1])
        proc = window.make_procedure()
        assert isinstance(proc, cls), name
        window.close()


def test_a_procedure_runs_from_the_managed_window(app, tmp_path):
    inputs = list(AcFieldProcedure().parameter_objects())
    window = ManagedWindow(procedure_class=AcFieldProcedure, inputs=inputs, displays=inputs,
                           x_axis="b0_t", y_axis="r")
    proc = window.make_procedure()
    proc.config, proc.repeats, proc.steps = SIM, 2, 60
    results = Results(proc, str(tmp_path / "gui.csv"))
    window.manager.queue(window.new_experiment(results))
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        app.processEvents()
        if proc.status in (Procedure.FINISHED, Procedure.FAILED) \
                and not window.manager.is_running():
            break
        time.sleep(0.02)
    assert proc.status == Procedure.FINISHED
    assert len(Results.load(str(tmp_path / "gui.csv"), AcFieldProcedure).data) == 2
    window.close()
