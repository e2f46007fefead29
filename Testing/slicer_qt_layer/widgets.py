"""The CTK and qMRML widgets the module's .ui files and code use, on PyQt5, and Slicer's `qt.QUiLoader`.

Each keeps only the behaviour the module relies on, read from the sources named (commontk/CTK at 868d56c7,
Slicer/Slicer at v5.12.3):
- ctkCollapsibleButton (commontk/CTK Libs/Widgets/ctkCollapsibleButton.cpp): a checkable button whose `collapsed`
  property is `not checked`; collapsing hides the child widgets; signal contentsCollapsed(bool).
- ctkPathLineEdit (CTK Libs/Widgets/ctkPathLineEdit.cpp): a line edit holding `currentPath`; signal
  currentPathChanged(QString) when it changes; `filters` (Dirs, Files, ...) is kept as a number.
- ctkMessageBox (CTK Libs/Widgets/ctkMessageBox.cpp): a QMessageBox (the "don't show again" box is not used).
- qMRMLWidget (Slicer Libs/MRML/Widgets/qMRMLWidget.cxx): setMRMLScene(scene) emits mrmlSceneChanged(vtkMRMLScene*),
  which the .ui wires to the node selectors.
- qMRMLNodeComboBox (Slicer Libs/MRML/Widgets/qMRMLNodeComboBox.cxx, v5.12.3): lists the nodes of the scene whose
  class is one of `nodeTypes` (and not hidden from editors), with a "None" item first when `noneEnabled`; follows
  nodes added to and removed from the scene; currentNode()/setCurrentNode(); signal
  currentNodeChanged(vtkMRMLNode*). Without a "None" item the first node becomes current (QComboBox's rule).
The classes are written PyQt5-style (PyQt5's uic calls setX() on them while loading); the `ctk`/`slicer` names
are their PythonQt-style subclasses (`pythonqtClass`), and loaded trees get PythonQt manners afterwards.
- QUiLoader (Slicer's PythonQt `qt.QUiLoader`, used by slicer.util.loadUI): builds the widget tree with PyQt5's uic,
  custom widgets from this file, then makes the <connections> by their signatures, as QUiLoader does.
"""

import io
import xml.etree.ElementTree as ET

from PyQt5 import QtCore, QtWidgets, uic

from .pythonqt import pythonqt, pythonqtClass

HEADER = "slicer_qt_layer/widgets.h"  # uic imports custom widget classes from the module named by <header>


class ctkCollapsibleButton(QtWidgets.QPushButton):
    contentsCollapsed = QtCore.pyqtSignal(bool)

    def __init__(self, parent=None):
        QtWidgets.QPushButton.__init__(self, parent)
        self._collapsed = False
        self.setCheckable(True)
        self.setChecked(True)
        self.toggled.connect(lambda checked: self.setCollapsed(not checked))
        self.setContentsMargins(0, QtWidgets.QPushButton.sizeHint(self).height(), 0, 0)  # contents below the header

    def _size(self, header, content):
        if self._collapsed or self.layout() is None:
            return header
        return QtCore.QSize(max(header.width(), content.width()), header.height() + content.height())

    def sizeHint(self):  # the header, and the contents when expanded
        return self._size(QtWidgets.QPushButton.sizeHint(self), self.layout() and self.layout().sizeHint())

    def minimumSizeHint(self):
        return self._size(QtWidgets.QPushButton.minimumSizeHint(self), self.layout() and self.layout().minimumSize())

    def getCollapsed(self):
        return self._collapsed

    def setCollapsed(self, collapsed):
        collapsed = bool(collapsed)
        self.setChecked(not collapsed)
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        for child in self.children():
            if isinstance(child, QtWidgets.QWidget):
                child.setVisible(not collapsed)
        self.updateGeometry()
        self.contentsCollapsed.emit(collapsed)

    def childEvent(self, event):
        if event.type() == QtCore.QEvent.ChildAdded and self._collapsed and event.child().isWidgetType():
            event.child().hide()
        QtWidgets.QPushButton.childEvent(self, event)

    collapsed = QtCore.pyqtProperty(bool, getCollapsed, setCollapsed)


class ctkPathLineEdit(QtWidgets.QWidget):
    _opaque = True  # its own child widgets are its implementation
    Dirs, Files, Drives = 0x001, 0x002, 0x004
    currentPathChanged = QtCore.pyqtSignal(str)

    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self._filters = self.Files
        self._edit = QtWidgets.QLineEdit(self)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._edit)
        self._edit.editingFinished.connect(lambda: self.currentPathChanged.emit(self._edit.text()))

    def getCurrentPath(self):
        return self._edit.text()

    def setCurrentPath(self, path):
        if path != self._edit.text():
            self._edit.setText(path)
            self.currentPathChanged.emit(path)

    def getFilters(self):
        return self._filters

    def setFilters(self, filters):
        self._filters = int(filters)

    def lineEdit(self):
        return pythonqt(self._edit)

    currentPath = QtCore.pyqtProperty(str, getCurrentPath, setCurrentPath)
    filters = QtCore.pyqtProperty(int, getFilters, setFilters)


class ctkMessageBox(QtWidgets.QMessageBox):
    pass


class qMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(QtWidgets.QWidget):
    _opaque = True  # its own child widgets are its implementation
    currentNodeChanged = QtCore.pyqtSignal(object)
    mrmlSceneChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self._scene, self._observers, self._current = None, [], None
        self._nodeTypes, self._noneEnabled = [], False
        self._addEnabled = self._removeEnabled = self._renameEnabled = self._showHidden = False
        self._combo = QtWidgets.QComboBox(self)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._combo)
        self._combo.currentIndexChanged.connect(self._onIndexChanged)

    # -- properties the .ui sets
    def _flag(name):  # noqa: N805 (a helper run in the class body)
        return QtCore.pyqtProperty(bool, lambda self: getattr(self, name),
                                   lambda self, value: (setattr(self, name, bool(value)), self._rebuild()))

    noneEnabled = _flag("_noneEnabled")
    addEnabled = _flag("_addEnabled")
    removeEnabled = _flag("_removeEnabled")
    renameEnabled = _flag("_renameEnabled")
    showHidden = _flag("_showHidden")
    del _flag

    def setNoneEnabled(self, value):
        self.noneEnabled = value

    def setAddEnabled(self, value):
        self.addEnabled = value

    def setRemoveEnabled(self, value):
        self.removeEnabled = value

    def getNodeTypes(self):
        return list(self._nodeTypes)

    def setNodeTypes(self, types):
        self._nodeTypes = list(types)
        self._rebuild()

    nodeTypes = QtCore.pyqtProperty("QStringList", getNodeTypes, setNodeTypes)

    # -- scene
    def setMRMLScene(self, scene):
        if scene is self._scene:
            return
        for tag in self._observers:
            self._scene.RemoveObserver(tag)
        self._scene, self._observers = scene, []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent):
                self._observers.append(scene.AddObserver(event, lambda *_: self._rebuild()))
        self._rebuild()
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene

    def _nodes(self):
        if self._scene is None:
            return []
        nodes = []
        for n in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(n)
            if any(node.IsA(t) for t in self._nodeTypes) and (self._showHidden or not node.GetHideFromEditors()):
                nodes.append(node)
        return nodes

    def _rebuild(self):
        nodes = self._nodes()
        self._combo.blockSignals(True)
        self._combo.clear()
        if self._noneEnabled:
            self._combo.addItem("None", "")
        for node in nodes:
            self._combo.addItem(node.GetName(), node.GetID())
        keep = self._current if self._current in nodes else None
        if keep is not None:
            index = self._combo.findData(keep.GetID())
        else:
            index = 0 if self._combo.count() else -1
        self._combo.setCurrentIndex(index)
        self._combo.blockSignals(False)
        self._onIndexChanged(index)

    def _onIndexChanged(self, _index):
        node = self.currentNode()
        if node is not self._current:
            self._current = node
            self.currentNodeChanged.emit(node)

    # -- current node
    def currentNode(self):
        nodeId = self._combo.currentData()
        return self._scene.GetNodeByID(nodeId) if nodeId and self._scene is not None else None

    def currentNodeID(self):
        node = self.currentNode()
        return node.GetID() if node is not None else ""

    def setCurrentNode(self, node):
        if isinstance(node, str):
            node = self._scene.GetNodeByID(node) if self._scene is not None else None
        index = self._combo.findData(node.GetID()) if node is not None else (0 if self._noneEnabled else -1)
        self._combo.setCurrentIndex(index)

    setCurrentNodeID = setCurrentNode

    def nodeCount(self):
        return len(self._nodes())

    def nodeFromIndex(self, index):
        return self._nodes()[index]

    def comboBox(self):
        return pythonqt(self._combo)


CUSTOM_WIDGETS = {cls.__name__: cls for cls in (ctkCollapsibleButton, ctkPathLineEdit, ctkMessageBox, qMRMLWidget,
                                                  qMRMLNodeComboBox)}


class QUiLoader:
    def load(self, qfile, parentWidget=None):
        root = ET.parse(qfile.fileName()).getroot()
        for custom in root.iter("customwidget"):
            if custom.findtext("class") not in CUSTOM_WIDGETS:
                raise ValueError(f"the test layer has no {custom.findtext('class')}: add it to {__name__}")
            custom.find("header").text = HEADER
        connections = root.find("connections")
        if connections is not None:
            root.remove(connections)
        widget = pythonqt(uic.loadUi(io.BytesIO(ET.tostring(root))))
        if parentWidget is not None:
            widget.setParent(parentWidget)
        for c in (connections if connections is not None else []):
            sender, receiver = (self._find(widget, c.findtext(k)) for k in ("sender", "receiver"))
            sender.connect(c.findtext("signal"), receiver, c.findtext("slot"))
        return widget

    @staticmethod
    def _find(top, name):
        return top if top.objectName == name else pythonqt(QtCore.QObject.findChild(top, QtCore.QObject, name))


def pythonqtWidget(name):
    """The class the `ctk`/`slicer` module offers under `name`."""
    return pythonqtClass(CUSTOM_WIDGETS[name])
