"""Training cases from the current scene: volume + segmentation pairs written as a folder that intake reads.

    folder = exportScenePairs([(ctNode, liverSegNode), (ct2Node, liver2SegNode)], folder)
    TrainingLogic(scene).start(TrainingSettings(source=folder, ...))
    scenePairs(scene)   # every segmentation with the volume it was made on (its reference geometry volume)

Each pair becomes `CASE.nrrd` + `CASE.seg.nrrd` (Slicer's own storage nodes write them), the side-by-side layout,
so segment names become label names and every check of `umamba import-dataset` applies unchanged. The nodes in
the scene are not modified.
"""

import os
import re

from .Errors import UserFacingError


def _caseName(name, used):
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", name or "case").strip("_") or "case"
    case, k = base, 1
    while case in used:
        k += 1
        case = f"{base}_{k}"
    used.add(case)
    return case


def _write(storageClass, node, path):
    import slicer
    scene = node.GetScene()
    storage = getattr(slicer, storageClass)()
    scene.AddNode(storage)  # a storage node resolves paths through its scene
    try:
        storage.SetFileName(path)
        if not storage.WriteData(node):
            raise UserFacingError(f"Slicer could not write '{node.GetName()}' to {path}.",
                                  "Check that the folder is writable and has free space.")
    finally:
        scene.RemoveNode(storage)


def scenePairs(scene):
    """(volume, segmentation) for every segmentation that has segments and names the volume it was made on
    (Segment Editor sets that reference when a segmentation is created on a source volume)."""
    pairs = []
    nodes = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for i in range(nodes.GetNumberOfItems()):
        segmentation = nodes.GetItemAsObject(i)
        volume = segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())
        if volume is not None and volume.IsA("vtkMRMLScalarVolumeNode") and not volume.IsA(
                "vtkMRMLLabelMapVolumeNode") and segmentation.GetSegmentation().GetNumberOfSegments() > 0:
            pairs.append((volume, segmentation))
    return sorted(pairs, key=lambda p: p[1].GetName())


def exportScenePairs(pairs, folder):
    """Write every (volume node, segmentation node) pair into `folder`; returns the folder."""
    pairs = [(v, s) for v, s in pairs if v is not None or s is not None]
    if len(pairs) < 2:
        raise UserFacingError(f"{len(pairs)} volume/segmentation pair(s) chosen; training needs at least 2.",
                              "Add more cases: one volume and its segmentation each.")
    for volume, segmentation in pairs:
        if volume is None or segmentation is None:
            named = (volume or segmentation).GetName()
            raise UserFacingError(f"'{named}' has no partner: each case needs a volume and a segmentation.",
                                  "Choose both for every case.")
        if segmentation.GetSegmentation().GetNumberOfSegments() == 0:
            raise UserFacingError(f"The segmentation '{segmentation.GetName()}' has no segments.",
                                  "Segment the structures to learn (Segment Editor) first.")
    os.makedirs(folder, exist_ok=True)
    used = set()
    for volume, segmentation in pairs:
        case = _caseName(volume.GetName(), used)
        _write("vtkMRMLVolumeArchetypeStorageNode", volume, os.path.join(folder, f"{case}.nrrd"))
        _write("vtkMRMLSegmentationStorageNode", segmentation, os.path.join(folder, f"{case}.seg.nrrd"))
    return folder
