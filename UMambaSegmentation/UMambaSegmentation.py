"""UMambaSegmentation: segment volumes with U-Mamba models (and train them: see UMambaSegmentationLib/Training*).

This file stays thin: the module description, a widget that only binds (UMambaSegmentationLib/SegmentationPanel),
and the self-test. No third-party package is imported here and nothing is installed or downloaded when the
module loads (Slicer's generic tests load every module, without a main window).
"""

import os

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class UMambaSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "UMamba Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["UMambaSegmentation contributors"]
        self.parent.helpText = (
            "Segment a loaded volume with a U-Mamba model (nnU-Net v2 with Mamba layers): choose a model from "
            "the model store and a volume, press Segment. Prediction runs in the background with a progress bar "
            "and can be cancelled. See the project's README for installing the dependencies.")
        self.parent.acknowledgementText = (
            "U-Mamba: Ma, Li, Wang, arXiv:2401.04722. nnU-Net: Isensee et al., Nature Methods 2021.")


class UMambaSegmentationWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from UMambaSegmentationLib.SegmentationPanel import SegmentationPanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/UMambaSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.panel = SegmentationPanel(self.ui, slicer.mrmlScene)
        # Dependencies section (see UMambaSegmentationLib/Dependencies*.py)
        from UMambaSegmentationLib.DependenciesWidget import DependenciesSection
        self.dependencies = DependenciesSection(self.layout, os.path.dirname(__file__))
        # Training section (see UMambaSegmentationLib/TrainingWidget.py)
        from UMambaSegmentationLib.TrainingWidget import TrainingSection
        self.training = TrainingSection(self.layout, self.resourcePath("UI/UMambaTraining.ui"), slicer.mrmlScene,
                                        storeFolder=lambda: self.panel.store.folder,
                                        onModelReady=self.panel.selectModel, compute=self.panel.compute.target)
        self.layout.addStretch(1)

    def cleanup(self):
        if hasattr(self, "panel"):
            self.panel.cleanup()
        if hasattr(self, "training"):
            self.training.cleanup()


class UMambaSegmentationLogic(ScriptedLoadableModuleLogic):
    """For Slicer's Python console: `logic = slicer.util.getModuleLogic("UMambaSegmentation")`."""

    def segmentationLogic(self, pythonExecutable=None):
        from UMambaSegmentationLib.SegmentationLogic import SegmentationLogic
        return SegmentationLogic(slicer.mrmlScene, pythonExecutable=pythonExecutable)

    def modelStore(self, folder=None):
        from UMambaSegmentationLib.ModelStore import ModelStore
        return ModelStore(folder)


class UMambaSegmentationTest(ScriptedLoadableModuleTest):
    """Reload and Test: trains a tiny model (2d configuration, 2 epochs of 15 iterations) on a synthetic phantom on
    the CPU, no internet; segments a synthetic volume with a known object (label 1 around a core, label 2) and
    checks segment names, geometry, the Dice of each label, and that cancelling a run leaves nothing behind. Nothing is installed: when umamba or torch is missing from Slicer's Python (the normal
    state on the extensions build server) the test is skipped with a message saying so."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_segmentSyntheticVolume()

    def test_segmentSyntheticVolume(self):
        from UMambaSegmentationLib import SelfTest

        missing = SelfTest.missingDependencies()
        if missing:
            self.skipTest(missing)
        self.delayDisplay("Training a tiny model on a synthetic phantom (CPU, about a minute)")
        workDir = os.path.join(slicer.app.temporaryPath, "UMambaSegmentationSelfTest")
        result = SelfTest.run(slicer.mrmlScene, workDir, log=self.delayDisplay, processEvents=slicer.app.processEvents)
        self.assertEqual(result.segmentNames, result.expectedNames)
        self.assertTrue(result.geometryMatches, "segmentation geometry differs from the input volume")
        for name, dice in result.dicePerLabel.items():
            self.assertGreater(dice, 0.5, f"Dice of '{name}': {dice:.3f}")
        self.assertTrue(result.cancelLeftNothing, "a cancelled segmentation left a node, process or temp folder")
        self.delayDisplay("Test passed (Dice " + ", ".join(f"{n} {d:.3f}" for n, d in result.dicePerLabel.items())
                          + ")")
