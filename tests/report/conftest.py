"""Session-wide real run folders (made once by ``advexplorer attack``) for the report tests."""

from __future__ import annotations

import pytest

from make_run import make_inputs, plain_run, protect_run


@pytest.fixture(scope="session")
def report_inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("report_inputs"))


@pytest.fixture(scope="session")
def protect_run_dir(report_inputs, tmp_path_factory):
    return protect_run(report_inputs, tmp_path_factory.mktemp("runs") / "protect")


@pytest.fixture(scope="session")
def plain_run_dir(report_inputs, tmp_path_factory):
    return plain_run(report_inputs, tmp_path_factory.mktemp("runs") / "plain")
