"""Binds the "Compute on" section (Resources/UI/UMambaSegmentation.ui) to RemoteCompute: this computer or a server.

The choice, the URL and the token are kept in Slicer's settings; `target()` is the RemoteCompute.ComputeTarget that
Segment and Train from folder use. This file runs only inside Slicer (it imports qt).
"""

import qt

from .RemoteCompute import ComputeTarget, checkConnection

COMPUTE_ON_SETTING = "UMambaSegmentation/ComputeOn"  # "server" or "local"
OK_STYLE, ERROR_STYLE = "color: #1e8449;", "color: #c0392b;"


class ComputePanel:
    """`onChange()` is called when the choice, the URL or the token changed, and after a successful Test
    connection (the panel then lists the server's models)."""

    def __init__(self, ui, onChange=None):
        self.ui = ui
        self.onChange = onChange
        settings = qt.QSettings()
        saved = ComputeTarget.fromSettings(settings)
        ui.serverUrlLineEdit.text = saved.serverUrl
        ui.serverTokenLineEdit.text = saved.token
        server = str(settings.value(COMPUTE_ON_SETTING, "") or "") == "server"
        ui.computeServerRadioButton.checked = server
        ui.computeLocalRadioButton.checked = not server
        ui.computeServerRadioButton.connect("toggled(bool)", self._changed)
        ui.serverUrlLineEdit.connect("editingFinished()", self._changed)
        ui.serverTokenLineEdit.connect("editingFinished()", self._changed)
        ui.testConnectionButton.connect("clicked(bool)", self.onTestConnection)
        self._render()

    def isRemote(self):
        return self.ui.computeServerRadioButton.checked

    def target(self):
        """Where Segment and Train run now (an empty ComputeTarget: this computer)."""
        if not self.isRemote():
            return ComputeTarget()
        return ComputeTarget(self.ui.serverUrlLineEdit.text.strip(), self.ui.serverTokenLineEdit.text.strip())

    def onTestConnection(self):
        if self.isRemote() and not self.target().isRemote:
            self._show(False, "Enter the server's URL, e.g. https://gpu-server:8765.")
            return
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            report = checkConnection(self.target())
        finally:
            qt.QApplication.restoreOverrideCursor()
        self._show(report.ok, report.message)
        if report.ok and self.onChange is not None:
            self.onChange()

    def _changed(self, _checked=None):
        settings = qt.QSettings()
        ComputeTarget(self.ui.serverUrlLineEdit.text.strip(), self.ui.serverTokenLineEdit.text.strip()).save(settings)
        settings.setValue(COMPUTE_ON_SETTING, "server" if self.isRemote() else "local")
        self._render()
        self.ui.connectionLabel.text = ""
        if self.onChange is not None:
            self.onChange()

    def _render(self):
        remote = self.isRemote()
        for widget in (self.ui.serverUrlLineEdit, self.ui.serverTokenLineEdit, self.ui.testConnectionButton):
            widget.enabled = remote
        self.ui.computeCollapsibleButton.text = "Compute on: " + ("server" if remote else "this computer")

    def _show(self, ok, message):
        self.ui.connectionLabel.text = message
        self.ui.connectionLabel.styleSheet = OK_STYLE if ok else ERROR_STYLE
