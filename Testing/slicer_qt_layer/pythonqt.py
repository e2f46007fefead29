"""Slicer's `qt` module (PythonQt) on PyQt5 widgets: Qt properties as attributes, string-signature `connect`.

What each piece stands for, and where the behaviour was read (MeVisLab/pythonqt at 642c06b6, src/):
- `PythonQtObject.__getattribute__/__setattr__`: a name that is a Qt property of the object's meta-object reads
  and writes the property, before any method of that name (`button.text`, `button.text = "x"`): PythonQtClassInfo
  .cpp looks properties up first. `name` maps to `objectName` (PYTHONQT_SUPPORT_NAME_PROPERTY, on in Slicer;
  slicer.util.childWidgetVariables reads it). A QString property set to a non-string stores `str(value)`, so
  `None` becomes the text "None": PythonQtConv::PyObjGetString(val, strict=false) calls PyObject_Str.
- `connect("clicked(bool)", slot)`: the signal named by its C++ signature; a Python function or method receives
  only as many of the signal's arguments as it declares (PythonQtSignalReceiver.cpp, co_argcount). PythonQt prints
  a warning and returns False for an unknown signal; here that raises, so a misspelt signature fails the test.
- `QFileDialog.getOpenFileName` returns a str, not PyQt5's (path, filter) tuple (PythonQt's generated wrapper
  returns the QString of QFileDialog::getOpenFileName).
- truth: a wrapper is true while its C++ object lives (PythonQtInstanceWrapper.cpp, nb_bool), whatever its
  count() (slicer.util.findChildren skips false objects).
Widgets made by the loader or by PyQt5 are given these manners with `pythonqt(obj)` (their class is swapped for a
PythonQt-style subclass of the same Qt class; the C++ object is untouched).
"""

import inspect
import sys
import types

from PyQt5 import QtCore, QtGui, QtWidgets, sip

_STRING_TYPES = {"QString"}
_PY_TYPES = {"bool": bool, "int": int, "double": float, "float": float, "QString": str}


def _property(obj, name):
    meta = QtCore.QObject.metaObject(obj)
    index = meta.indexOfProperty(name)
    if index < 0 and name == "name":
        index = meta.indexOfProperty("objectName")
    if index < 0 or (name == "singleShot" and isinstance(obj, QtCore.QTimer)):
        return None  # PythonQt hides QTimer.singleShot the property: the static function is meant
    return meta.property(index)


def _argumentCount(slot):
    """How many signal arguments PythonQt passes to `slot` (None: all)."""
    function = slot.__func__ if inspect.ismethod(slot) else slot
    code = getattr(function, "__code__", None)
    if code is None or code.co_flags & inspect.CO_VARARGS:
        return None
    return code.co_argcount - (1 if inspect.ismethod(slot) else 0)


class PythonQtObject:
    """Mixed in before a PyQt5 class: the attribute manners of a PythonQt wrapper."""

    def __getattribute__(self, name):
        if not name.startswith("_"):
            prop = _property(self, name)
            if prop is not None:
                return prop.read(self)
        return super().__getattribute__(name)

    def __bool__(self):  # PythonQtInstanceWrapper_builtin_nonzero: true while the C++ object lives (PyQt5's
        return not sip.isdeleted(self)  # QComboBox.__len__ would make an empty combo box false)

    def __setattr__(self, name, value):
        prop = None if name.startswith("_") else _property(self, name)
        if prop is None:
            return super().__setattr__(name, value)
        if prop.typeName() in _STRING_TYPES and not isinstance(value, str):
            value = str(value)
        if not prop.write(self, value):
            raise AttributeError(f"property {name} of {type(self).__name__} is read-only or got {value!r}")

    def connect(self, signal, *target):
        """connect("name(types)", callable) or connect("name(types)", receiver, "slot(types)")."""
        name, _, args = signal.partition("(")
        args = [a.strip() for a in args.rstrip(")").split(",") if a.strip()]
        slot = target[0] if len(target) == 1 else getattr(target[0], target[1].partition("(")[0])
        try:
            bound = object.__getattribute__(self, name)
        except AttributeError:
            bound = None
        if not isinstance(bound, QtCore.pyqtBoundSignal):
            raise ValueError(f"{type(self).__name__} has no signal {signal}")
        if args and all(a in _PY_TYPES for a in args):
            try:
                bound = bound[tuple(_PY_TYPES[a] for a in args)] if len(args) > 1 else bound[_PY_TYPES[args[0]]]
            except KeyError:
                raise ValueError(f"{type(self).__name__} has no signal {signal}") from None
        count = _argumentCount(slot)
        bound.connect(lambda *values: slot(*(values if count is None else values[:count])))
        return True


_classes = {}


def pythonqtClass(cls):
    """The PythonQt-style subclass of a PyQt5 class (one per class)."""
    if issubclass(cls, PythonQtObject):
        return cls
    if cls not in _classes:
        _classes[cls] = type(cls.__name__, (PythonQtObject, cls), {"__module__": "qt"})
    return _classes[cls]


def pythonqt(obj):
    """Give a PyQt5 object (and the objects below it) PythonQt manners; returns it."""
    if isinstance(obj, QtCore.QObject):
        if not isinstance(obj, PythonQtObject):
            obj.__class__ = pythonqtClass(type(obj))
        if not getattr(type(obj), "_opaque", False):  # a layer widget's inner parts stay PyQt5 objects
            for child in QtCore.QObject.children(obj):
                pythonqt(child)
    return obj


class QFileDialog(pythonqtClass(QtWidgets.QFileDialog)):
    @staticmethod
    def getOpenFileName(parent=None, caption="", directory="", filter=""):  # noqa: A002 (Qt's name)
        return QtWidgets.QFileDialog.getOpenFileName(parent, caption, directory, filter)[0]


def makeQtModule(uiLoader):
    """The `qt` module: PythonQt-style classes for QObjects, everything else from PyQt5 as it is."""
    module = types.ModuleType("qt", "Slicer's PythonQt `qt` module, on PyQt5 (test layer)")
    for source in (QtCore, QtGui, QtWidgets):
        for name in dir(source):
            value = getattr(source, name)
            if name.startswith("Q") and isinstance(value, type) and issubclass(value, QtCore.QObject):
                value = pythonqtClass(value)
            if not name.startswith("_"):
                setattr(module, name, value)
    module.Qt = QtCore.Qt
    module.QFileDialog = QFileDialog
    module.QUiLoader = uiLoader
    return module


def installQt(uiLoader):
    if "qt" not in sys.modules:
        sys.modules["qt"] = makeQtModule(uiLoader)
    return sys.modules["qt"]
