"""Training curves in the scene: one table row per finished epoch, plotted by Slicer's Plots module (Qt-free).

    chart = TrainingChart(scene, "Dataset501_Liver bot 3d_fullres")
    chart.addEpoch(event)          # an `epoch_end` event of `umamba train --progress-json`
    chart.tableNode, chart.chartNode

Table columns: epoch, train loss, validation loss, then "Dice <label>" per foreground label (nnU-Net's pseudo
Dice on the validation patches). Values that an epoch did not log are NaN, which the plot leaves out. An epoch
that is logged again (a run resumed from the checkpoint before it) replaces its earlier row, so the table holds
exactly one row per finished epoch. Nodes are found again by their attribute, so a resumed run keeps its chart.
"""

import math

import vtk

RUN_ATTRIBUTE = "UMambaSegmentation.TrainingRun"
EPOCH, TRAIN_LOSS, VAL_LOSS = "epoch", "train loss", "validation loss"
DICE_PREFIX = "Dice "
# Distinct colours: the two losses, then one per label.
COLORS = [(0.20, 0.40, 0.80), (0.90, 0.45, 0.10), (0.15, 0.65, 0.25), (0.80, 0.15, 0.20), (0.55, 0.30, 0.75),
          (0.60, 0.45, 0.25), (0.85, 0.40, 0.70), (0.40, 0.40, 0.40), (0.70, 0.70, 0.10), (0.10, 0.70, 0.75)]


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


class TrainingChart:
    def __init__(self, scene, runId, title=None):
        self.scene = scene
        self.runId = runId
        self.title = title or runId
        self.tableNode = self._find("vtkMRMLTableNode") or self._newTable()
        self.chartNode = self._find("vtkMRMLPlotChartNode") or self._newChart()

    # -- nodes -----------------------------------------------------------------------------------------------------
    def _find(self, className):
        nodes = self.scene.GetNodesByClass(className)
        for i in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(i)
            if node.GetAttribute(RUN_ATTRIBUTE) == self.runId:
                return node
        return None

    def _newTable(self):
        node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.title} training")
        node.SetAttribute(RUN_ATTRIBUTE, self.runId)
        for name in (EPOCH, TRAIN_LOSS, VAL_LOSS):
            self._addColumn(node, name)
        return node

    def _newChart(self):
        chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{self.title} training curves")
        chart.SetAttribute(RUN_ATTRIBUTE, self.runId)
        chart.SetTitle(f"Training: {self.title}")
        chart.SetXAxisTitle("epoch")
        chart.SetYAxisTitle("loss / pseudo Dice")
        chart.SetLegendVisibility(True)
        for name in (TRAIN_LOSS, VAL_LOSS):
            self._addSeries(chart, name)
        return chart

    @staticmethod
    def _addColumn(tableNode, name):
        column = vtk.vtkDoubleArray()
        column.SetName(name)
        column.SetNumberOfTuples(tableNode.GetNumberOfRows())
        column.Fill(math.nan)
        tableNode.GetTable().AddColumn(column)
        return column

    def _addSeries(self, chart, columnName):
        series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{self.title} {columnName}")
        series.SetAttribute(RUN_ATTRIBUTE, self.runId)
        series.SetAndObserveTableNodeID(self.tableNode.GetID())
        series.SetXColumnName(EPOCH)
        series.SetYColumnName(columnName)
        series.SetPlotType(series.PlotTypeScatter)  # scatter with lines: points at epochs, joined
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetColor(*COLORS[chart.GetNumberOfPlotSeriesNodes() % len(COLORS)])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        return series

    def _column(self, name):
        table = self.tableNode.GetTable()
        column = table.GetColumnByName(name)
        if column is None:
            column = self._addColumn(self.tableNode, name)
            self._addSeries(self.chartNode, name)
        return table.GetColumnIndex(name)

    # -- rows ------------------------------------------------------------------------------------------------------
    def addEpoch(self, event):
        """Record one `epoch_end` event (ignored when it carries no epoch number)."""
        epoch = event.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            return
        values = {TRAIN_LOSS: _number(event.get("train_loss")), VAL_LOSS: _number(event.get("val_loss"))}
        labels = event.get("labels") or []
        for i, dice in enumerate(event.get("pseudo_dice") or []):
            label = labels[i] if i < len(labels) else f"label {i + 1}"
            values[DICE_PREFIX + str(label)] = _number(dice)
        columns = {name: self._column(name) for name in values}   # may add columns and series first
        table = self.tableNode.GetTable()
        row = self._rowOf(epoch)
        if row is None:
            row = self._insertRowInOrder(epoch)
        for name, index in columns.items():
            table.SetValue(row, index, vtk.vtkVariant(values[name]))
        table.Modified()
        self.tableNode.Modified()

    def _rowOf(self, epoch):
        column = self.tableNode.GetTable().GetColumnByName(EPOCH)
        for row in range(column.GetNumberOfTuples()):
            if column.GetValue(row) == epoch:
                return row
        return None

    def _insertRowInOrder(self, epoch):
        """Rows stay sorted by epoch: append, then move later rows down by one."""
        table = self.tableNode.GetTable()
        row = table.InsertNextBlankRow(math.nan)
        epochColumn = table.GetColumnByName(EPOCH)
        while row > 0 and epochColumn.GetValue(row - 1) > epoch:
            for c in range(table.GetNumberOfColumns()):
                table.SetValue(row, c, table.GetValue(row - 1, c))
            row -= 1
        for c in range(table.GetNumberOfColumns()):
            table.SetValue(row, c, vtk.vtkVariant(math.nan))
        table.SetValue(row, table.GetColumnIndex(EPOCH), vtk.vtkVariant(float(epoch)))
        return row

    def rows(self):
        """The table as a list of {column name: value} dicts, one per epoch (tests, the run state file)."""
        table = self.tableNode.GetTable()
        names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
        return [{name: table.GetValue(r, c).ToDouble() for c, name in enumerate(names)}
                for r in range(table.GetNumberOfRows())]

    def clear(self):
        self.tableNode.GetTable().SetNumberOfRows(0)
        self.tableNode.Modified()
