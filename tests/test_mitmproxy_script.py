"""The mitmproxy script in two places, one addons list: the checkout's root ``intercept_addon.py``
and the installed ``intercept_addon/script/intercept.py`` that ``intercept-addon script`` prints."""

from __future__ import annotations

import runpy

from harness import ROOT
from intercept_addon.cli import main

INSTALLED = ROOT / "intercept_addon" / "script" / "intercept.py"


def test_script_command_prints_the_package_script(capsys):
    assert main(["script"]) == 0
    assert capsys.readouterr().out == f"{INSTALLED}\n"


def test_both_scripts_list_the_same_addons_fresh_each_load():
    root = runpy.run_path(str(ROOT / "intercept_addon.py"))["addons"]
    installed = runpy.run_path(str(INSTALLED))["addons"]
    assert [type(a) for a in root] == [type(a) for a in installed]
    assert root and not {id(a) for a in root} & {id(a) for a in installed}  # a reload gets new ones
