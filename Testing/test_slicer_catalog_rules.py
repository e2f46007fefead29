"""The ExtensionsIndex's published checks applied to this extension, offline.

Restated from Slicer/ExtensionsIndex at commit 07f1d1b: scripts/check_description_files.py (the checks its
"Extension Validation" workflow runs on a submitted `<Extension>.json`) and schemas/slicer-extension-catalog-entry-
schema-v1.0.2.json. Checks that need the network (downloading the schema, the repository's GitHub topics, fetching
the icon) are replaced by their offline part (the schema restated here, the URL's form)."""

import json
import os
import re
import subprocess
import urllib.parse as urlparse

import pytest

from test_slicer_helpers import REPO

SCHEMA_V102 = {  # schemas/slicer-extension-catalog-entry-schema-v1.0.2.json, constraints only
    "$schema": "http://json-schema.org/draft-07/schema", "type": "object",
    "required": ["$schema", "category", "scm_url"], "additionalProperties": False,
    "properties": {"$schema": {"type": "string"}, "category": {"type": "string"}, "scm_url": {"type": "string"},
                   "scm_revision": {"type": "string"}, "scm_type": {"type": "string", "enum": ["git", "local"]},
                   "build_dependencies": {"type": "array", "additionalItems": False, "items": {"type": "string"}},
                   "dicom_support_rule": {"type": "string"}, "build_subdirectory": {"type": "string"},
                   "enabled": {"type": "boolean"}, "tier": {"type": "integer", "minimum": 1, "maximum": 5}}}
ACCEPTED_CATEGORIES = {  # ACCEPTED_EXTENSION_CATEGORIES
    "Active Learning", "Analysis", "Auto3dgm", "BigImage", "Cardiac", "Chest Imaging Platform", "Conda", "Converters",
    "DICOM", "DSCI", "Developer Tools", "Diffusion", "Examples", "Exporter", "FTV Segmentation", "Filtering",
    "Filtering.Morphology", "Filtering.Vesselness", "Holographic Display", "Image Synthesis", "IGT", "Informatics",
    "Netstim", "Neuroimaging", "Nuclear Medicine", "Orthodontics", "Osteotomy Planning", "Otolaryngology",
    "Photogrammetry", "Pipelines", "Planning", "Printing", "Quantification", "Radiotherapy", "Registration", "Remote",
    "Rendering", "SPHARM", "Segmentation", "Sequences", "Shape Analysis", "Shape Regression", "Shape Visualization",
    "Simulation", "SlicerCMF", "SlicerMorph", "Spectral Imaging", "Supervisely", "Surface Models", "SurfaceLearner",
    "Tomographic Reconstruction", "Tracking", "Tractography", "Training", "Ultrasound", "Utilities",
    "Vascular Modeling Toolkit", "Virtual Reality", "VisSimTools", "Web System Tools", "Wizards"}
REPOSITORY_PREFIXES = ("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_")
LICENSE_NAMES = ["LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt"]
SIZE_LIMIT_MB = 100


def catalogProblems(name, entryBytes, cmake, repositoryFiles):
    """What the catalog's checks would report for the entry `name`.json (bytes), the top-level CMakeLists.txt
    text and {relative path: size} of the repository; [] when every check passes."""
    jsonschema = pytest.importorskip("jsonschema")
    problems = []
    entry = json.loads(entryBytes)
    if b"\r" in entryBytes:
        problems.append("non-LF line endings")
    try:
        jsonschema.validate(entry, SCHEMA_V102)
    except jsonschema.ValidationError as exc:
        problems.append(f"schema: {exc.message}")
    if name.lower().startswith("slicer"):
        problems.append("extension name starts with Slicer")
    if entry.get("category") not in ACCEPTED_CATEGORIES:
        problems.append(f"unknown category {entry.get('category')!r}")
    url = entry.get("scm_url", "").strip().strip("/")
    repo = os.path.splitext(urlparse.urlsplit(url).path.split("/")[-1])[0]
    if not repo.startswith(REPOSITORY_PREFIXES):
        problems.append(f"repository name {repo!r} does not start with Slicer")
    if "://" not in url or urlparse.urlsplit(url).scheme not in ("git", "https"):
        problems.append("scm_url is not git:// or https://")
    project = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", cmake, re.I | re.M)
    if not project or project[0].strip("\"'") != name:
        problems.append(f"CMake project {project[:1]} is not {name}")
    icon = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', cmake, re.I | re.M)
    if not icon:
        problems.append("no EXTENSION_ICONURL")
    elif not icon[0].startswith("http") or not icon[0].lower().endswith((".png", ".jpg", ".jpeg", ".gif")):
        problems.append(f"icon URL {icon[0]} is not an image URL")
    screenshots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', cmake, re.I | re.M)
    if not screenshots:
        problems.append("no EXTENSION_SCREENSHOTURLS")
    if not any(n in repositoryFiles for n in LICENSE_NAMES):
        problems.append("no license file")
    if sum(repositoryFiles.values()) / 2 ** 20 > SIZE_LIMIT_MB:
        problems.append(f"repository larger than {SIZE_LIMIT_MB} MB")
    return problems


def trackedFiles():
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    names = out.stdout.splitlines() if out.returncode == 0 and out.stdout else \
        [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts]
    return {n: (REPO / n).stat().st_size for n in names if (REPO / n).is_file()}


def test_the_extension_meets_the_catalog_rules_except_the_screenshot_it_does_not_have_yet():
    cmake = (REPO / "CMakeLists.txt").read_text()
    problems = catalogProblems("UMambaSegmentation", (REPO / "UMambaSegmentation.json").read_bytes(), cmake,
                               trackedFiles())
    # The catalog asks for a screenshot; none is listed until one of the module running in Slicer exists (a
    # placeholder would show users something that is not the module). Add it before submitting to the index.
    assert problems == ["no EXTENSION_SCREENSHOTURLS"]
    assert 'set(EXTENSION_SCREENSHOTURLS "")' in cmake


def test_the_rules_bite():
    cmake = (REPO / "CMakeLists.txt").read_text().replace('SCREENSHOTURLS ""', 'SCREENSHOTURLS "https://x/a.png"')
    files = trackedFiles()
    good = json.dumps(json.loads((REPO / "UMambaSegmentation.json").read_text())).encode()
    assert catalogProblems("UMambaSegmentation", good, cmake, files) == []
    entry = json.loads(good)
    bad = {**entry, "scm_url": "https://github.com/umamba-segmentation/UMambaSegmentation.git",
           "category": "Segmentations", "tier": 7}
    problems = catalogProblems("SlicerUMamba", json.dumps(bad).encode().replace(b",", b",\r\n"), cmake,
                               {"README.md": 200 * 2 ** 20})
    assert len(problems) == 8, problems
