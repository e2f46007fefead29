"""Binds the "Train from folder" section (Resources/UI/UMambaTraining.ui) to the Qt-free TrainingPresenter.

Nothing here decides anything: TrainingPresenter.view() says what is enabled and what the labels show. This file
runs only inside Slicer (it imports qt, ctk, slicer).
"""

import os

import ctk
import qt
import slicer

from .TrainingLogic import TrainingLogic, defaultTrainingFolder
from .TrainingPresenter import TrainingPresenter
from .TrainingRun import TrainingSettings

FOLDER_SETTING = "UMambaSegmentation/TrainingFolder"
POLL_INTERVAL_MS = 250


class TrainingSection:
    """A collapsible "Train from folder" section added to the module panel's layout.

    `storeFolder()` returns the model store the panel uses (the finished model goes there); `onModelReady(name)`
    selects it in the panel; `compute()` says where to train (RemoteCompute.ComputeTarget, None: this computer).
    """

    def __init__(self, parentLayout, uiPath, scene, storeFolder, onModelReady=None, pythonExecutable=None,
                 compute=None):
        self.scene = scene
        self.storeFolder = storeFolder
        self.onModelReady = onModelReady
        self.compute = compute or (lambda: None)
        self.button = ctk.ctkCollapsibleButton()
        self.button.text = "Train from folder"
        self.button.collapsed = True
        parentLayout.addWidget(self.button)
        layout = qt.QVBoxLayout(self.button)
        widget = slicer.util.loadUI(uiPath)
        layout.addWidget(widget)
        self.ui = slicer.util.childWidgetVariables(widget)
        self.logic = TrainingLogic(scene, pythonExecutable=pythonExecutable)
        self.presenter = TrainingPresenter(self.logic, onChange=self.render, onModelReady=self._modelReady,
                                           onEvent=self._onEvent)
        self.shownLogLines = 0
        self.chartShown = False
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self._tick)
        self.ui.trainingFolderLineEdit.text = qt.QSettings().value(FOLDER_SETTING) or defaultTrainingFolder()
        self._connect()
        self._findRuns()
        self.render()

    def _connect(self):
        ui = self.ui
        ui.browseSourceButton.connect("clicked(bool)", self.onBrowseSource)
        ui.useSceneButton.connect("clicked(bool)", self.onUseScene)
        ui.sourceLineEdit.connect("editingFinished()", self.onSourceChanged)
        ui.channelNamesLineEdit.connect("editingFinished()", self.onSourceChanged)
        ui.browseTrainingFolderButton.connect("clicked(bool)", self.onBrowseTrainingFolder)
        ui.trainingFolderLineEdit.connect("editingFinished()", self.onTrainingFolderChanged)
        ui.startButton.connect("clicked(bool)", self.onStart)
        ui.cancelButton.connect("clicked(bool)", self.presenter.cancel)
        ui.resumeButton.connect("clicked(bool)", self.onResume)

    def cleanup(self):
        """Module closed or reloaded: stop polling and stop a running step (the run stays resumable)."""
        self.timer.stop()
        self.presenter.cancel()

    # -- inputs ----------------------------------------------------------------------------------------------------
    def onBrowseSource(self):
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder with images and labels")
        if folder:
            self.ui.sourceLineEdit.text = folder
            self.onSourceChanged()

    def onUseScene(self):
        try:
            folder = self.logic.exportSceneCases(self.ui.trainingFolderLineEdit.text.strip())
        except Exception as exc:  # UserFacingError (too few pairs, ...) or a write failure
            slicer.util.errorDisplay(f"Could not use the scene's segmentations: {exc}")
            return
        self.ui.sourceLineEdit.text = folder
        self.onSourceChanged()

    def onSourceChanged(self):
        self.presenter.setSource(self.ui.sourceLineEdit.text.strip(), self.ui.channelNamesLineEdit.text.strip())
        self.timer.start()

    def onBrowseTrainingFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(None, "Training folder", self.ui.trainingFolderLineEdit.text)
        if folder:
            self.ui.trainingFolderLineEdit.text = folder
            self.onTrainingFolderChanged()

    def onTrainingFolderChanged(self):
        qt.QSettings().setValue(FOLDER_SETTING, self.ui.trainingFolderLineEdit.text)
        self._findRuns()

    def _findRuns(self):
        folder = self.ui.trainingFolderLineEdit.text
        self.presenter.setFoundRuns(self.logic.resumableRuns(folder) if folder and os.path.isdir(folder) else [])

    def settings(self):
        ui = self.ui
        return TrainingSettings(
            source=ui.sourceLineEdit.text.strip(), trainingFolder=ui.trainingFolderLineEdit.text.strip(),
            datasetName=ui.datasetNameLineEdit.text.strip(), variant=ui.variantComboBox.currentText,
            configuration=ui.configurationComboBox.currentText, epochs=ui.epochsSpinBox.value,
            fold=ui.foldComboBox.currentText, device=ui.deviceComboBox.currentText,
            channelNames=ui.channelNamesLineEdit.text.strip(), modelStoreFolder=self.storeFolder())

    # -- actions ---------------------------------------------------------------------------------------------------
    def onStart(self):
        self.presenter.setSettings(self.settings())
        self.logic.compute = self.compute()
        self.chartShown = False
        self.presenter.start()
        self.timer.start()

    def onResume(self):
        self.logic.compute = self.compute()
        self.chartShown = False
        self.presenter.resume()
        self.timer.start()

    def _tick(self):
        self.presenter.poll()
        if not self.presenter.isBusy():
            self.timer.stop()

    def _onEvent(self, event):
        if event.get("event") == "epoch_end" and not self.chartShown and self.presenter.job is not None:
            self.chartShown = True
            try:  # the Plots module shows the chart in a plot view of the layout
                slicer.modules.plots.logic().ShowChartInLayout(self.presenter.job.chart.chartNode)
            except AttributeError:
                pass

    def _modelReady(self, name):
        if self.onModelReady is not None:
            self.onModelReady(name)

    # -- view ------------------------------------------------------------------------------------------------------
    def render(self):
        view = self.presenter.view()
        ui = self.ui
        ui.detectedLabel.text = view.sourceText
        ui.labelsLabel.text = view.labelsText
        ui.channelsLabel.text = view.channelsText
        for widget in (ui.sourceLineEdit, ui.browseSourceButton, ui.useSceneButton, ui.datasetNameLineEdit,
                       ui.channelNamesLineEdit,
                       ui.variantComboBox, ui.configurationComboBox, ui.epochsSpinBox, ui.foldComboBox,
                       ui.deviceComboBox, ui.trainingFolderLineEdit, ui.browseTrainingFolderButton):
            widget.enabled = view.inputsEnabled
        ui.startButton.enabled = view.startEnabled
        ui.cancelButton.enabled = view.cancelEnabled
        ui.resumeButton.enabled = view.resumeEnabled
        ui.resumeLabel.text = view.resumeText
        ui.resumeLabel.visible = bool(view.resumeText)
        ui.progressBar.visible = view.progressVisible
        if view.progressValue < 0:
            ui.progressBar.setRange(0, 0)
        else:
            ui.progressBar.setRange(0, 100)
            ui.progressBar.value = view.progressValue
        ui.progressBar.format = view.progressText or "%p%"
        ui.statusLabel.text = view.statusText
        ui.errorLabel.text = view.errorText
        ui.errorLabel.visible = bool(view.errorText)
        self._appendLog()
        error = self.presenter.takeErrorForDialog()
        if error is not None:
            # PythonQt turns None into the text "None": pass detailedText only when there are details
            details = {"detailedText": error.details} if error.details else {}
            slicer.util.errorDisplay(error.message + (f"\n\n{error.hint}" if error.hint else ""), **details)

    def _appendLog(self):
        lines = self.presenter.logLines
        if len(lines) < self.shownLogLines:
            self.ui.logTextEdit.clear()
            self.shownLogLines = 0
        for line in lines[self.shownLogLines:]:
            self.ui.logTextEdit.appendPlainText(line)
        self.shownLogLines = len(lines)
