"""The "Dependencies" section of the module panel: status, one "Install dependencies..." button, a log.

Nothing runs when the section is created except reading the small pending-install file: the environment is probed
only when the person presses a button, and nothing is installed in testing mode.
"""

import os
import sys

import ctk
import qt
import slicer

from UMambaSegmentationLib.DependencyInstaller import DependencyInstaller, SlicerCalls
from UMambaSegmentationLib.Errors import UserFacingError
from UMambaSegmentationLib.UmambaCommand import findPythonExecutable


class DependenciesSection:
    def __init__(self, parentLayout, moduleDir):
        self.collapsible = ctk.ctkCollapsibleButton()
        self.collapsible.text = "Dependencies"
        self.collapsible.collapsed = True
        parentLayout.addWidget(self.collapsible)
        layout = qt.QVBoxLayout(self.collapsible)
        self.statusLabel = qt.QLabel("Press 'Check' to see what is installed and which Mamba backend will run.")
        self.statusLabel.wordWrap = True
        layout.addWidget(self.statusLabel)
        buttons = qt.QHBoxLayout()
        self.checkButton = qt.QPushButton("Check")
        self.installButton = qt.QPushButton("Install dependencies...")
        buttons.addWidget(self.checkButton)
        buttons.addWidget(self.installButton)
        layout.addLayout(buttons)
        self.logView = qt.QPlainTextEdit()
        self.logView.readOnly = True
        self.logView.maximumHeight = 160
        layout.addWidget(self.logView)
        settingsDir = os.path.dirname(slicer.app.slicerUserSettingsFilePath)
        try:
            python = findPythonExecutable()
        except FileNotFoundError as exc:  # shown when a button is pressed, never an error while loading
            python = sys.executable
            self.statusLabel.text = str(exc)
        self.calls = SlicerCalls(python, log=self.log)
        self.installer = DependencyInstaller(moduleDir, settingsDir, self.calls)
        self.checkButton.connect("clicked()", self.onCheck)
        self.installButton.connect("clicked()", self.onInstall)
        pending = self.installer.pendingSteps()
        if pending:
            self.collapsible.collapsed = False
            self.statusLabel.text = (f"An installation was interrupted by a restart; {len(pending)} step(s) remain. "
                                     "Press 'Install dependencies...' to continue.")

    def log(self, text):
        self.logView.appendPlainText(str(text))
        slicer.app.processEvents()

    def _showError(self, exc):
        self.statusLabel.text = f"{exc.message}\n{exc.hint or ''}".strip()
        slicer.util.errorDisplay(exc.message, **({"detailedText": exc.hint} if exc.hint else {}))

    def onCheck(self):
        with slicer.util.tryWithErrorDisplay("Could not check the dependencies.", waitCursor=True):
            plan = self.installer.makePlan()
            for s in plan.steps:
                self.log(f"{s.name}: {s.action} - {s.reason}")
            todo = [s for s in plan.steps if s.action in ("pip", "pytorchutils")]
            self.statusLabel.text = (f"Mamba backend: {plan.backend} on {plan.device}. "
                                     + (f"{len(todo)} item(s) to install." if todo else "Nothing to install."))

    def onInstall(self):
        try:
            steps = self.installer.pendingSteps()
            plan = None
            if not steps:
                plan = self.installer.makePlan()
                steps = self.installer.actionableSteps(plan)
            text = self.installer.confirmationText(steps, plan)
            if not slicer.util.confirmOkCancelDisplay(text, windowTitle="Install U-Mamba dependencies"):
                return
            outcome, detail = self.installer.run(steps)
        except UserFacingError as exc:
            self._showError(exc)
            return
        except Exception as exc:  # pip failures and the like: in the panel, not only in the console
            self._showError(UserFacingError(f"Installation failed: {exc}",
                                            "The log below has pip's output; the previous setup was not removed."))
            return
        if outcome == "restart":
            self.statusLabel.text = f"Restart needed: {', '.join(detail)} changed while in use."
            if slicer.util.confirmYesNoDisplay(f"{', '.join(detail)} changed while already loaded. Restart Slicer "
                                               "now? The installation continues after the restart."):
                slicer.util.restart()
        elif outcome == "done":
            if detail.get("ok"):
                self.statusLabel.text = (f"Verified: a Mamba layer ran on {detail['device']} with the "
                                         f"{detail['backend']} backend (torch {detail['torch']}).")
                if detail.get("summary"):  # per device: the scan for training and inference, and why
                    self.statusLabel.text += "\n" + detail["summary"]
                if plan is None or any(s.action == "pending" for s in plan.steps):
                    self.statusLabel.text += " Press 'Check' to see whether a Mamba CUDA kernel fits now."
            else:
                self.statusLabel.text = f"Verification failed: {detail.get('error')}"
