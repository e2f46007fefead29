"""The real-Slicer CI workflow (.github/workflows/slicer.yml) names exactly what it runs: the module folder, the
self-test class and its entry point, on Slicer 5.10 and the latest stable release. (It cannot run here: no Slicer
binary is reachable from these machines; GitHub's runners download it.)"""

import ast
import re

from test_slicer_helpers import MODULE_DIR, REPO

WORKFLOW = REPO / ".github" / "workflows" / "slicer.yml"


def test_workflow_runs_the_module_self_test_that_exists():
    text = WORKFLOW.read_text()
    assert 'name: "5.10"' in text and 'name: "stable"' in text
    runs = re.findall(r"UMambaSegmentation\.(\w+)\('(\w+)'\)", text)
    assert runs and set(runs) == {("UMambaSegmentationTest", "runTest")}
    assert text.count("xvfb-run -a ./slicer/Slicer --no-splash") == 2 and "--testing" in text
    assert '--additional-module-paths "$GITHUB_WORKSPACE/UMambaSegmentation"' in text
    assert (REPO / "UMambaSegmentation").resolve() == MODULE_DIR.resolve()
    module = ast.parse((MODULE_DIR / "UMambaSegmentation.py").read_text())
    test = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "UMambaSegmentationTest")
    assert "runTest" in {f.name for f in test.body if isinstance(f, ast.FunctionDef)}
    assert "./umamba" in text  # the package the extension carries is what gets installed
