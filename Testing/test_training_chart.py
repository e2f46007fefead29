"""Training curves as table and plot nodes in a real MRML scene, and the run state file they are rebuilt from."""

import json
import math

from test_slicer_helpers import newScene

from UMambaSegmentationLib.TrainingChart import DICE_PREFIX, EPOCH, RUN_ATTRIBUTE, TRAIN_LOSS, VAL_LOSS, TrainingChart
from UMambaSegmentationLib.TrainingRun import RunState, TrainingSettings, findRuns


def epochEvent(epoch, loss, dice, labels=("liver", "tumor")):
    return {"event": "epoch_end", "epoch": epoch, "of": 10, "train_loss": loss, "val_loss": loss / 2,
            "pseudo_dice": list(dice), "labels": list(labels), "epoch_time_s": 1.0, "eta_s": 9.0}


def test_one_row_per_epoch_in_order_with_the_logged_values():
    scene = newScene()
    chart = TrainingChart(scene, "run-a", title="Liver bot 3d_fullres")
    chart.addEpoch(epochEvent(1, 0.9, [0.1, None]))
    chart.addEpoch(epochEvent(3, 0.5, [0.5, 0.3]))
    chart.addEpoch(epochEvent(2, 0.7, [0.3, 0.2]))
    chart.addEpoch(epochEvent(3, 0.4, [0.6, 0.35]))       # epoch 3 again (resumed before its checkpoint)
    chart.addEpoch({"event": "epoch_end", "epoch": None})  # no epoch number: ignored
    rows = chart.rows()
    assert [r[EPOCH] for r in rows] == [1, 2, 3]
    assert [r[TRAIN_LOSS] for r in rows] == [0.9, 0.7, 0.4]
    assert [r[VAL_LOSS] for r in rows] == [0.45, 0.35, 0.2]
    assert [r[DICE_PREFIX + "liver"] for r in rows] == [0.1, 0.3, 0.6]
    assert math.isnan(rows[0][DICE_PREFIX + "tumor"]) and rows[2][DICE_PREFIX + "tumor"] == 0.35
    assert chart.tableNode.GetNumberOfRows() == 3


def test_every_column_is_plotted_against_the_epoch():
    scene = newScene()
    chart = TrainingChart(scene, "run-b")
    chart.addEpoch(epochEvent(1, 0.9, [0.1], labels=["spleen"]))
    node = chart.chartNode
    assert node.GetNumberOfPlotSeriesNodes() == 3
    series = [node.GetNthPlotSeriesNode(i) for i in range(3)]
    assert [s.GetYColumnName() for s in series] == [TRAIN_LOSS, VAL_LOSS, DICE_PREFIX + "spleen"]
    assert all(s.GetXColumnName() == EPOCH and s.GetTableNodeID() == chart.tableNode.GetID() for s in series)
    assert len({tuple(s.GetColor()) for s in series}) == 3
    # A later event with a new label adds its column and its series.
    chart.addEpoch(epochEvent(2, 0.8, [0.2, 0.4], labels=["spleen", "kidney"]))
    assert node.GetNumberOfPlotSeriesNodes() == 4
    assert math.isnan(chart.rows()[0][DICE_PREFIX + "kidney"]) and chart.rows()[1][DICE_PREFIX + "kidney"] == 0.4


def test_a_run_finds_its_nodes_again_and_other_runs_get_their_own():
    scene = newScene()
    first = TrainingChart(scene, "run-c")
    first.addEpoch(epochEvent(1, 0.9, [0.1]))
    again = TrainingChart(scene, "run-c")
    other = TrainingChart(scene, "run-d")
    assert again.tableNode.GetID() == first.tableNode.GetID() and again.chartNode.GetID() == first.chartNode.GetID()
    assert len(again.rows()) == 1
    assert other.tableNode.GetID() != first.tableNode.GetID() and other.rows() == []
    assert other.tableNode.GetAttribute(RUN_ATTRIBUTE) == "run-d"


def test_run_state_round_trip_and_discovery(tmp_path):
    settings = TrainingSettings(source=str(tmp_path / "src"), trainingFolder=str(tmp_path / "ws"), epochs=5)
    state = RunState.new(settings)
    state.recordEpoch(epochEvent(1, 0.9, [0.1]))
    state.recordEpoch(epochEvent(2, 0.8, [0.2]))
    state.recordEpoch(epochEvent(2, 0.7, [0.25]))  # replaced, not duplicated
    state.stage, state.status = "train", "cancelled"
    state.save()
    broken = tmp_path / "ws" / "umamba_runs" / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{ not json")
    [found] = findRuns(str(tmp_path / "ws"))
    assert found.runId == state.runId and found.settings == settings
    assert [e["epoch"] for e in found.epochs] == [1, 2] and found.epochs[1]["train_loss"] == 0.7
    assert found.resumable
    assert "cancelled at stage train, 2/5 epochs" in found.describe()
    found.stage, found.status = "finished", "finished"
    assert not found.resumable
    assert json.loads((tmp_path / "ws" / "umamba_runs" / state.runId / "run.json").read_text())["stage"] == "train"
    assert not list((tmp_path / "ws" / "umamba_runs" / state.runId).glob("*.tmp-*"))
