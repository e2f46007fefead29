"""Binds the panel's Qt widgets (Resources/UI/UMambaSegmentation.ui) to the Qt-free presenter and model store.

Nothing here decides anything: what a state means and which buttons are enabled comes from
Presenter.SegmentationPresenter.view(). This file runs only inside Slicer (it imports qt, ctk, slicer).
"""

import qt
import slicer

from .ComputePanel import ComputePanel
from .Errors import UserFacingError
from .ModelStore import ModelStore
from .Presenter import SegmentationPresenter
from .RemoteCompute import serverModels
from .RunEstimate import estimateText
from .SegmentationLogic import SegmentationLogic, SegmentationOptions

STORE_SETTING = "UMambaSegmentation/ModelStoreFolder"
POLL_INTERVAL_MS = 200


class SegmentationPanel:
    def __init__(self, ui, scene, pythonExecutable=None):
        self.ui = ui
        self.scene = scene
        self.pythonExecutable = pythonExecutable
        self.store = ModelStore(qt.QSettings().value(STORE_SETTING) or None)
        self.logic = SegmentationLogic(scene, pythonExecutable=pythonExecutable)
        self.presenter = SegmentationPresenter(self.logic, onChange=self.render)
        self.extraChannelSelectors = []
        self.remoteModels = {}  # name -> ModelInfo of the server's models, when computing on a server
        self.remoteError = ""
        self.shownLogLines = 0
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.presenter.poll)
        self._connect()
        self.compute = ComputePanel(ui, onChange=self.onComputeChanged)
        self.ui.storePathLineEdit.currentPath = self.store.folder
        self.onComputeChanged()
        self.render()

    def _connect(self):
        ui = self.ui
        ui.modelSelector.connect("currentIndexChanged(int)", self.onModelChanged)
        ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onVolumesChanged)
        ui.segmentButton.connect("clicked(bool)", self.onButton)
        ui.importFolderButton.connect("clicked(bool)", lambda: self.onImport(folder=True))
        ui.importZipButton.connect("clicked(bool)", lambda: self.onImport(folder=False))
        ui.deleteModelButton.connect("clicked(bool)", self.onDelete)
        ui.openModelFolderButton.connect("clicked(bool)", self.onOpenFolder)
        ui.storePathLineEdit.connect("currentPathChanged(QString)", self.onStoreChanged)
        # the estimate follows every setting it depends on (and disappears for a GPU device)
        ui.fastCheckBox.connect("toggled(bool)", self.showEstimate)
        ui.disableTtaCheckBox.connect("toggled(bool)", self.showEstimate)
        ui.stepSizeSpinBox.connect("valueChanged(double)", self.showEstimate)
        ui.deviceComboBox.connect("currentIndexChanged(int)", self.showEstimate)

    def cleanup(self):
        """Module closed or reloaded: stop polling and stop a running task with its processes."""
        self.timer.stop()
        self.presenter.cancel()

    # -- model store -----------------------------------------------------------------------------------------------
    def onComputeChanged(self):
        """This computer lists the local store; a server lists its own models (the store buttons are for local)."""
        remote = self.compute.isRemote()
        for widget in (self.ui.importFolderButton, self.ui.importZipButton, self.ui.deleteModelButton,
                       self.ui.openModelFolderButton, self.ui.storePathLineEdit):
            widget.enabled = not remote
        self.refreshModels()

    def _listModels(self):
        self.remoteModels, self.remoteError = {}, ""
        if not self.compute.isRemote():
            return self.store.models()
        target = self.compute.target()
        if not target.isRemote:
            self.remoteError = "Enter the server's URL in 'Compute on'."
            return []
        try:
            self.remoteModels = {m.name: m for m in serverModels(target, timeout=10)}
        except UserFacingError as exc:
            self.remoteError = f"{exc.message} {exc.hint}"
        return list(self.remoteModels.values())

    def refreshModels(self, select=None):
        models = self._listModels()
        current = select or self.ui.modelSelector.currentText
        self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.clear()
        for model in models:
            self.ui.modelSelector.addItem(model.name)
        index = self.ui.modelSelector.findText(current) if current else -1
        self.ui.modelSelector.setCurrentIndex(index if index >= 0 else 0 if models else -1)
        self.ui.modelSelector.blockSignals(False)
        self.onModelChanged()

    def selectModel(self, name):
        """Used by the training section when a run has registered its model."""
        self.refreshModels(select=name)

    def onModelChanged(self, _index=None):
        name = self.ui.modelSelector.currentText
        if not name:
            self.presenter.setModel(None)
            self.ui.modelCardLabel.text = self.remoteError or (
                "No model on the server yet." if self.compute.isRemote()
                else f"No model in {self.store.folder} yet: import one.")
            self._updateChannelSelectors()
            return
        if self.compute.isRemote():
            model = self.remoteModels[name]
            self.ui.modelCardLabel.text = "On the server: " + model.summary()
            self.presenter.setModel(model)
            self._updateChannelSelectors()
            return
        stored = next((m for m in self.store.models() if m.name == name), None)
        self.ui.modelCardLabel.text = stored.description() if stored else ""
        if stored is not None:
            self.presenter.setModelFolder(stored.folder, name=stored.name, card=stored.card)
        self._updateChannelSelectors()

    def onStoreChanged(self, path):
        if path and path != self.store.folder:
            self.store = ModelStore(path)
            qt.QSettings().setValue(STORE_SETTING, self.store.folder)
            self.refreshModels()

    def onImport(self, folder):
        if folder:
            source = qt.QFileDialog.getExistingDirectory(None, "Model or results folder to import")
        else:
            source = qt.QFileDialog.getOpenFileName(None, "Model zip to import", "", "Zip archives (*.zip)")
        if not source:
            return
        try:
            job = self.store.importJob(source, pythonExecutable=self.pythonExecutable)
            self.presenter.runJob(job, "import", f"Importing {source}...")
        except Exception as exc:  # UserFacingError or a failure to start the process
            slicer.util.errorDisplay(f"Could not import the model: {exc}")
            return
        self.timer.start()

    def onDelete(self):
        name = self.ui.modelSelector.currentText
        if name and slicer.util.confirmYesNoDisplay(f"Delete the model '{name}' and its files from the store?"):
            self.store.delete(name)
            self.refreshModels()

    def onOpenFolder(self):
        name = self.ui.modelSelector.currentText
        folder = self.store.folderOf(name) if name else self.store.folder
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(folder))

    # -- inputs ----------------------------------------------------------------------------------------------------
    def _updateChannelSelectors(self):
        """One volume selector per model input channel (the first is inputVolumeSelector)."""
        model = self.presenter.model
        channels = model.channelNames if model else ["input"]
        self.ui.inputVolumeLabel.text = f"{channels[0]}:" if model else "Input volume:"
        layout = self.ui.extraChannelsLayout
        while len(self.extraChannelSelectors) > len(channels) - 1:
            label, selector = self.extraChannelSelectors.pop()
            layout.removeRow(selector)  # deletes the label and the selector with the row
        while len(self.extraChannelSelectors) < len(channels) - 1:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.noneEnabled = True
            selector.addEnabled = False
            selector.removeEnabled = False
            selector.setMRMLScene(self.scene)
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.onVolumesChanged)
            label = qt.QLabel()
            layout.addRow(label, selector)
            self.extraChannelSelectors.append((label, selector))
        for (label, _selector), name in zip(self.extraChannelSelectors, channels[1:]):
            label.text = f"{name}:"
        self.ui.extraChannelsWidget.visible = bool(self.extraChannelSelectors)
        self.onVolumesChanged()

    def onVolumesChanged(self, _node=None):
        nodes = [self.ui.inputVolumeSelector.currentNode()]
        nodes += [selector.currentNode() for _label, selector in self.extraChannelSelectors]
        if any(node is None for node in nodes[1:]):
            nodes = nodes[:1 + next(i for i, n in enumerate(nodes[1:]) if n is None)]
        self.presenter.setVolumes(nodes)
        self.showEstimate()

    def showEstimate(self, _checked=None):
        """The CPU time estimate (RunEstimate.py) for the first input volume, before the run starts."""
        node, ui = self.ui.inputVolumeSelector.currentNode(), self.ui
        image = node.GetImageData() if node is not None else None
        ui.estimateLabel.text = "" if image is None or ui.deviceComboBox.currentText not in ("auto", "cpu") else \
            estimateText(self.presenter.model, image.GetDimensions()[::-1], node.GetSpacing()[::-1],
                         ui.stepSizeSpinBox.value, not ui.disableTtaCheckBox.checked, ui.fastCheckBox.checked)

    def options(self):
        return SegmentationOptions(device=self.ui.deviceComboBox.currentText,
                                   disableTta=self.ui.disableTtaCheckBox.checked,
                                   stepSize=self.ui.stepSizeSpinBox.value, fast=self.ui.fastCheckBox.checked,
                                   compute=self.compute.target())

    # -- the button and the view -----------------------------------------------------------------------------------
    def onButton(self):
        self.presenter.setOptions(self.options())
        self.presenter.pressButton()
        if self.presenter.isRunning():
            self.timer.start()

    def render(self):
        view = self.presenter.view()
        ui = self.ui
        ui.segmentButton.text = view.buttonText
        ui.segmentButton.enabled = view.buttonEnabled
        ui.segmentButton.toolTip = view.buttonToolTip
        for widget in (ui.modelCollapsibleButton, ui.inputsCollapsibleButton, ui.advancedCollapsibleButton):
            widget.enabled = view.inputsEnabled
        ui.progressBar.visible = view.progressVisible
        if view.progressValue < 0:
            ui.progressBar.setRange(0, 0)  # busy indicator
        else:
            ui.progressBar.setRange(0, 100)
            ui.progressBar.value = view.progressValue
        ui.progressBar.format = view.progressText or "%p%"
        ui.statusLabel.text = view.statusText
        ui.errorLabel.text = view.errorText
        ui.errorLabel.visible = bool(view.errorText)
        self._appendLog()
        if not self.presenter.isRunning():
            self.timer.stop()
            self._afterRun()

    def _appendLog(self):
        lines = self.presenter.logLines
        if len(lines) < self.shownLogLines:  # a new run cleared the log
            self.ui.logTextEdit.clear()
            self.shownLogLines = 0
        for line in lines[self.shownLogLines:]:
            self.ui.logTextEdit.appendPlainText(line)
        self.shownLogLines = len(lines)

    def _afterRun(self):
        error = self.presenter.takeErrorForDialog()
        if error is not None:
            # PythonQt turns None into the text "None": pass detailedText only when there are details
            details = {"detailedText": error.details} if error.details else {}
            slicer.util.errorDisplay(error.message + (f"\n\n{error.hint}" if error.hint else ""), **details)
        if self.presenter.activity == "import" and self.presenter.state == "done":
            names = getattr(self.presenter.job, "importedNames", [])
            self.presenter.activity = "segment"
            self.refreshModels(select=names[0] if names else None)
        node = self.presenter.segmentationNode
        if node is not None and self.presenter.state == "done":
            self.presenter.segmentationNode = None  # show it once
            slicer.util.setSliceViewerLayers(background=self.presenter.job.volumeNodes[0])
