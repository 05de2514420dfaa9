"""Without Ray installed, ``vidlora sweep`` and ``vidlora serve`` say what to install (one
line, exit 2) before reading a plan's model or loading anything; and the sweep plan and
the serve request checks import neither Ray nor torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers.paths import REPO_ROOT

_RUNNER = textwrap.dedent(
    """
    import contextlib, importlib.abc, io, json, sys

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ray", "torch"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, _Block())
    from vidlora.app.cli import main
    from vidlora.app.serve.request import parse_body
    from vidlora.app.serve.config import ServeLimits
    from vidlora.app.sweep import parse_plan

    parse_plan({"prompts": ["a"], "seeds": [1, 2], "loras": [["m.safetensors:0.5"]]})
    parse_body({"prompt": "a", "lora": [{"model": "m", "weight": 0.5}]}, ServeLimits(), "t2v")
    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        results.append({"rc": rc, "err": err.getvalue()})
    assert not any(m in sys.modules for m in ("ray", "torch")), "a blocked module was imported"
    print(json.dumps(results))
    """
)


def test_sweep_and_serve_say_what_to_install(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "tiny", "prompts": ["a"]}))
    cases = [["sweep", str(plan), "--out", str(tmp_path / "out")], ["serve", "--model", "tiny"]]
    out = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(cases)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    for result in json.loads(out.stdout.strip().splitlines()[-1]):
        lines = [ln for ln in result["err"].splitlines() if ln.startswith("vidlora: error")]
        assert result["rc"] == 2 and len(lines) == 1, result
        assert 'pip install "vidlora[ray]"' in lines[0], lines[0]
    assert not (tmp_path / "out").exists()  # nothing was made before the check
