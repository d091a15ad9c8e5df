"""The built wheel (not the editable checkout) holds every subpackage and the shipped model, and its console
scripts work: installed into a fresh venv (dependencies borrowed from the test environment)."""
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_every_subpackage_and_its_commands_run(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("aptnn-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    source = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "aptnn").rglob("__init__.py")}
    source |= {"aptnn/" + str(p.parent.relative_to(ROOT)) for p in (ROOT / "drivers").rglob("__init__.py")}
    packaged = {n.rsplit("/", 1)[0] for n in names if n.endswith("__init__.py")}
    assert source <= packaged, f"missing from the wheel: {sorted(source - packaged)}"
    assert "aptnn/models/water-rpbe-d3.pt" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    # dependencies from this environment's site-packages, after the venv's own aptnn (never the checkout)
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    bin_ = venv / "bin"
    for cmd in (["aptnn", "--help"], ["aptnn", "label", "--help"], ["aptnn-ipi", "--help"], ["aptnn-post", "--help"]):
        res = subprocess.run([str(bin_ / cmd[0]), *cmd[1:]], capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=300)
        assert res.returncode == 0 and "Usage" in res.stdout, (cmd, res.stderr[-2000:])
    code = ("import aptnn, ase.build; from aptnn.predict import APTPredictor; "
            "print(aptnn.__file__); a = ase.build.molecule('H2O'); "
            "print(APTPredictor.load('water-rpbe-d3').predict(a).sum(0).trace())")
    res = subprocess.run([str(bin_ / "python"), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    where, trace = res.stdout.split()
    assert where.startswith(str(venv)) and abs(float(trace)) < 1e-4  # the installed copy; sum rule Q = 0
