"""Fixtures for the napari plugin's tests: a headless Qt with OpenGL, a small detecting model, small EM files.

Headless: napari's canvas needs an OpenGL context. Qt's `offscreen` platform (QT_QPA_PLATFORM, set
here) creates one only through GLX on an X server; without one every image layer fails
(vispy: `'NoneType' object has no attribute 'decode'` from glGetString). So when DISPLAY is unset
and Xvfb is installed (Debian: `apt-get install xvfb`), a private Xvfb is started for the session.
The `viewer` fixture checks once, in a subprocess, that a napari viewer can show an image, and skips
with the reason otherwise; tests of the non-Qt modules need neither napari nor a display.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_helpers import calibrated_tiff, detecting_model, em_frame  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "lucchi_slice_150.tif"  # 1024x768, ImageJ TIFF at 5 nm
HAVE_NAPARI = True
try:
    import napari  # noqa: F401
    import pytestqt  # noqa: F401 - napari's make_napari_viewer needs pytest-qt's qtbot
except ImportError:
    HAVE_NAPARI = False
NO_NAPARI = "napari (with pytest-qt) is not installed: pip install -e '.[napari]' pytest-qt"


_XVFB: list[subprocess.Popen] = []  # the private X server, when this session started one


def _start_xvfb(attempts: int = 4) -> None:
    """A private X server for GL when there is no display (best effort: the GL probe says if it failed).

    Two pytest-xdist workers start theirs at the same moment and can race for the same display number
    (one Xvfb then exits before reporting it), so a failed start is retried after a short pause."""
    import random
    import time

    xvfb = shutil.which("Xvfb")
    if os.environ.get("DISPLAY") or xvfb is None:
        return
    for attempt in range(attempts):
        read, write = os.pipe()
        proc = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
                                pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if number:
            os.environ["DISPLAY"] = f":{number}"
            atexit.register(proc.kill)
            _XVFB.append(proc)
            return
        proc.kill()
        time.sleep(0.2 + random.random() * (attempt + 1))


if HAVE_NAPARI:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _start_xvfb()

_PROBE = """
import numpy as np
from qtpy.QtWidgets import QApplication
app = QApplication([])
import napari
viewer = napari.Viewer(show=False)
viewer.add_image(np.zeros((8, 8), np.uint8))
viewer.close()
"""


@pytest.fixture(scope="session")
def gl_available() -> None:
    """Skip unless a napari viewer can show an image here (an OpenGL context under Qt's platform)."""
    if not HAVE_NAPARI:
        pytest.skip(NO_NAPARI)
    probe = _probe_gl()
    if probe and _XVFB and _XVFB[0].poll() is not None:  # our X server died during the session: start another
        _XVFB.clear()
        os.environ.pop("DISPLAY", None)
        _start_xvfb()
        probe = _probe_gl()
    if probe:
        xvfb = "no private Xvfb" if not _XVFB else ("Xvfb running" if _XVFB[0].poll() is None else "Xvfb exited")
        pytest.skip(f"napari cannot render here (no OpenGL context: Qt's {os.environ.get('QT_QPA_PLATFORM')} platform "
                    f"needs an X server for GL; install Xvfb, e.g. apt-get install xvfb; DISPLAY="
                    f"{os.environ.get('DISPLAY')!r}, {xvfb}): {probe}")


def _probe_gl() -> str:
    """'' when a napari viewer can show an image in a fresh process, else the reason it could not."""
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "a napari viewer did not start within 180 s"
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["?"])[-1]
    return ""


@pytest.fixture
def viewer(gl_available, request):
    """napari's `make_napari_viewer` (from its pytest plugin, looked up only once napari is known to be here)."""
    v = request.getfixturevalue("make_napari_viewer")()
    v.window._qt_window.resize(1500, 950)
    return v


@pytest.fixture(scope="session")
def det_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny random model with a threshold that keeps a few of its (meaningless) detections per tile."""
    return detecting_model(tiny_model_dir, tmp_path_factory.mktemp("det"), quantile=97.0)


@pytest.fixture(scope="session")
def small_frame(tmp_path_factory) -> Path:
    """A 256x320 synthetic EM frame at 5 nm."""
    return calibrated_tiff(tmp_path_factory.mktemp("frame") / "frame.tif", em_frame((256, 320), seed=3, n=8), 5.0)


@pytest.fixture(scope="session")
def sample_crop(tmp_path_factory) -> Path:
    """A 512x576 crop of the repo's Lucchi sample (its right half, dense with mitochondria), still at its 5 nm."""
    import tifffile

    image = tifffile.imread(SAMPLE)[0:512, 448:1024]
    return calibrated_tiff(tmp_path_factory.mktemp("sample") / "lucchi_crop.tif", image, 5.0)
