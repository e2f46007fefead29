"""Extension packaging: CMake lists every file, the catalog entry is valid, the module's Python runs on
Slicer's Python 3.12 and imports nothing heavy at file scope."""

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import find_python
from test_slicer_helpers import MODULE_DIR, REPO

PYTHON312, PYTHON312_SOURCE = find_python("3.12")  # the source says where it was looked for when it is None
# Slicer's catalog entry schema v1.0.1, as published in Slicer/Slicer at Schemas/slicer-extension-catalog-entry-
# schema-v1.0.1.json (commit 0e8d0c4a): the constraints are restated here so the test runs offline.
CATALOG_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "$id": "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#",
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "additionalItems": False, "items": {"type": "string"}},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "enum": [1, 3, 5]},
    },
}
# What Slicer's Python provides to a scripted module without any pip install.
SLICER_PROVIDED = {"slicer", "qt", "ctk", "vtk", "numpy", "UMambaSegmentationLib"}


def module_files():
    """Files of the module folder that are part of the project: committed ones (work in progress joins the
    check once committed), or every file when this is not a git checkout."""
    result = subprocess.run(["git", "ls-files", "--cached", "."], cwd=MODULE_DIR, capture_output=True, text=True)
    if result.returncode == 0 and result.stdout.strip():
        return {line for line in result.stdout.splitlines() if (MODULE_DIR / line).is_file()}
    return {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def cmake_listed(cmake_text, variable):
    body = re.search(rf"set\({variable}\n(.*?)\n\s*\)", cmake_text, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in body.splitlines()]
    return {line.replace("${MODULE_NAME}", "UMambaSegmentation") for line in lines if line}


def test_module_cmake_lists_every_python_file_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    scripts = cmake_listed(cmake, "MODULE_PYTHON_SCRIPTS")
    resources = cmake_listed(cmake, "MODULE_PYTHON_RESOURCES")
    files = module_files()
    on_disk = {f for f in files if f.endswith(".py")}
    assert on_disk - scripts == set(), "Python files that would not be packaged: add them to CMakeLists.txt"
    assert scripts - on_disk == set(), "listed but missing"
    assert {f for f in files if f.startswith("Resources/")} == resources
    assert "WITH_GENERIC_TESTS" in cmake
    assert re.search(r"slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", cmake)


def test_top_level_cmake_has_the_extension_metadata():
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "project(UMambaSegmentation)" in cmake and "add_subdirectory(UMambaSegmentation)" in cmake
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{key} "[^"]+"\)', cmake), key
    assert 'set(EXTENSION_SCREENSHOTURLS "")' in cmake  # none until a real screenshot of the module exists
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in cmake and 'set(EXTENSION_CATEGORY "Segmentation")' in cmake
    assert "Resources/Icons/UMambaSegmentation.png" in cmake
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()


def test_catalog_entry_is_valid_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    entry = json.loads((REPO / "UMambaSegmentation.json").read_text())
    jsonschema.Draft7Validator(CATALOG_SCHEMA).validate(entry)
    assert entry["$schema"].rstrip("#") == CATALOG_SCHEMA["$id"].rstrip("#")
    assert entry["category"] == "Segmentation" and entry["build_dependencies"] == ["PyTorch"]
    # the checks bite: a misspelt key and a missing required one are refused
    for broken in ({**entry, "scmurl": "x"}, {k: v for k, v in entry.items() if k != "scm_url"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(CATALOG_SCHEMA).validate(broken)


def module_python_files():
    return sorted(p for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.skipif(PYTHON312 is None, reason=PYTHON312_SOURCE)
def test_module_files_compile_with_python_3_12(tmp_path):
    # Slicer >= 5.10 runs Python 3.12: each file must compile there (without writing __pycache__ into the tree).
    code = ("import py_compile, sys\n"
            "for i, f in enumerate(sys.argv[2:]):\n"
            "    py_compile.compile(f, cfile=f'{sys.argv[1]}/{i}.pyc', doraise=True)\n")
    result = subprocess.run([str(PYTHON312), "-c", code, str(tmp_path), *map(str, module_python_files())],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(PYTHON312 is None, reason=PYTHON312_SOURCE)
def test_qt_free_logic_imports_on_python_3_12_without_slicer():
    # The Qt-free, scene-free parts import with a bare Python 3.12 (no torch, no umamba, no slicer).
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import UMambaSegmentationLib.ProcessRunner, UMambaSegmentationLib.ModelInfo\n"
            "import UMambaSegmentationLib.ModelStore, UMambaSegmentationLib.UmambaCommand\n"
            "import UMambaSegmentationLib.Presenter\n"
            "assert 'torch' not in sys.modules and 'umamba' not in sys.modules\n")
    result = subprocess.run([str(PYTHON312), "-c", code, str(MODULE_DIR)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_nothing_heavy_is_imported_at_file_scope():
    stdlib = set(__import__("sys").stdlib_module_names)
    for path in module_python_files():
        tree = ast.parse(path.read_text())
        for node in tree.body:  # file scope only: imports inside functions run when used, not when loaded
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in SLICER_PROVIDED, f"{path.name} imports {name} at file scope"


def test_one_repository_address_used_everywhere():
    cmake = (REPO / "CMakeLists.txt").read_text()
    url = re.search(r'set\(EXTENSION_REPOSITORY_URL "([^"]+)"\)', cmake).group(1)
    # the ExtensionsIndex checker wants the repository name to start with "Slicer"
    assert re.fullmatch(r"https://github\.com/[\w.-]+/Slicer[\w.-]+", url), url
    assert "${EXTENSION_REPOSITORY_URL}" in re.search(r"set\(EXTENSION_HOMEPAGE [^)]*\)", cmake).group(0)
    owner_repo = url.removeprefix("https://github.com/")
    icon = re.search(r'set\(EXTENSION_ICONURL "([^"]+)"\)', cmake).group(1)
    assert icon == f"https://raw.githubusercontent.com/{owner_repo}/main/UMambaSegmentation/Resources/Icons/" \
                   "UMambaSegmentation.png"
    entry = json.loads((REPO / "UMambaSegmentation.json").read_text())
    assert entry["scm_url"] in (url, url + ".git")
    readme = (REPO / "README.md").read_text()
    assert url in readme
    others = set(re.findall(r"https://(?:github\.com|raw\.githubusercontent\.com)/umamba-segmentation/[\w.-]+",
                            readme + cmake))
    others = {o.replace("raw.githubusercontent.com", "github.com") for o in others}
    assert {o.removesuffix(".git") for o in others} <= {url}, others
