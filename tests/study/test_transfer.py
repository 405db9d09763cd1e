"""Transfer (datasets.pretrain_on), per-backbone protocol options, the scratch-cmc arm and the transfer
matrix (study.transfer)."""

import math

import numpy as np
import pytest

from selfstudy.errors import UserError
from selfstudy.study.baselines import baseline_of, scratch_init
from selfstudy.study.spec import expand, load_spec
from selfstudy.study.transfer import points_from_records, render_markdown, transfer_matrices, transfer_matrix

SMOKE2 = ["datasets.factors=[TCVL, '0000']", "budget_check.mode=off"]


def _plan(overrides):
    return expand(load_spec("smoke", [*SMOKE2, *overrides]))


def test_same_dataset_cells_keep_their_ids_and_the_transfer_grid_adds_the_off_diagonal():
    plain = _plan([])
    same = _plan(["datasets.pretrain_on=same"])
    grid = _plan(["datasets.pretrain_on=all"])
    assert [c.id for c in same.all] == [c.id for c in plain.all]
    # 2 datasets x 1 SSL method x 1 backbone x 1 seed pretrainings either way.
    assert len(grid.pretrain) == len(plain.pretrain) == 2
    rot = [c for c in grid.downstream if c.method == "rotation"]
    pairs = {(c.pretrained_on, c.dataset) for c in rot}
    assert pairs == {("1111", "1111"), ("1111", "0000"), ("0000", "1111"), ("0000", "0000")}
    # 2 finetune datasets x 2 sources x 2 protocols x 2 label counts
    assert len(rot) == 16
    by_id = {c.id for c in plain.downstream}
    for c in grid.downstream:
        same_source = c.pretrained_on in (None, c.dataset)
        assert (c.id in by_id) == same_source, c.label
        assert ("pretrained_on" in c.config) == (not same_source)
    moved = next(c for c in rot if c.pretrained_on == "0000" and c.dataset == "1111")
    loads = {p.id: p for p in grid.pretrain}[moved.pretrain_id]
    assert loads.dataset == "0000" and moved.config["pretrained_on"]["factors"] == "0000"
    assert "pretrained on 0000" not in moved.label and "(pretrained on ----)" in moved.label
    assert all(c.pretrained_on is None for c in grid.downstream if c.method == "scratch")


def test_pretrain_on_a_dataset_outside_the_finetuning_ones():
    plan = expand(load_spec("smoke", ["datasets.pretrain_on=['0000']", "budget_check.mode=off"]))
    assert [p.dataset for p in plan.pretrain] == ["0000"]
    assert set(plan.datasets) == {"1111", "0000"}
    assert {c.dataset for c in plan.downstream} == {"1111"}
    assert {c.pretrained_on for c in plan.downstream if c.method == "rotation"} == {"0000"}


@pytest.mark.parametrize("value, match", [("[XXXX]", "pretrain_on"), ("['0000', '0000']", "twice"),
                                          ("{a: 1}", "all, same or a non-empty list")])
def test_bad_pretrain_on_is_one_line(value, match):
    with pytest.raises(UserError, match=match) as e:
        load_spec("smoke", [f"datasets.pretrain_on={value}"])
    assert "\n" not in str(e.value)


def test_per_backbone_finetune_options_merge_over_the_shared_ones():
    base = ["backbones=[resnet9-tiny, resnet9]", "budget_check.mode=off"]
    spec = load_spec("smoke", [*base, "finetune.resnet9={batch_size: 32, max_steps: 80}"])
    plan = expand(spec)
    budgets = {c.backbone: c.config["budget"] for c in plan.downstream if c.protocol == "finetune"}
    assert (budgets["resnet9"]["batch_size"], budgets["resnet9"]["max_steps"]) == (32, 80)
    assert (budgets["resnet9-tiny"]["batch_size"], budgets["resnet9-tiny"]["max_steps"]) == (64, 40)
    assert budgets["resnet9"]["min_steps"] == budgets["resnet9-tiny"]["min_steps"] == 20
    assert spec.protocol_options("finetune", "resnet9")["batch_size"] == 32
    assert spec.protocol_options("finetune", "resnet9-tiny")["batch_size"] == 64
    # Without the per-backbone block, every id is the one the plain spec gives.
    plain = expand(load_spec("smoke", base))
    tiny = [c.id for c in plain.all if c.backbone == "resnet9-tiny"]
    assert tiny == [c.id for c in plan.all if c.backbone == "resnet9-tiny"]
    with pytest.raises(UserError, match="resnet9"):
        load_spec("smoke", [*base, "finetune.resnet9={batch_sise: 32}"])
    with pytest.raises(UserError, match="finetune.resnet9 must be a mapping"):
        load_spec("smoke", [*base, "finetune.resnet9=3"])


def test_scratch_cmc_is_a_scratch_arm_on_cmcs_architecture():
    spec = load_spec("smoke", ["methods={scratch: {}, scratch-cmc: {}, cmc: {epochs: 1}}",
                               "budget_check.mode=off"])
    plan = expand(spec)
    arm = [c for c in plan.downstream if c.method == "scratch-cmc"]
    assert arm and all(c.pretrain_id is None and c.config["arch"] == "cmc" for c in arm)
    assert {p.method for p in plan.pretrain} == {"cmc"}
    assert baseline_of("cmc", [m.name for m in spec.methods]) == "scratch-cmc"
    assert baseline_of("rotation", [m.name for m in spec.methods]) == "scratch"
    assert baseline_of("cmc", ["scratch", "cmc"]) == "scratch"
    with pytest.raises(UserError, match="takes no options"):
        load_spec("smoke", ["methods={scratch: {}, scratch-cmc: {epochs: 3}}"])


class _FakeDataset:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)

    def __getitem__(self, key):
        assert key == "images"
        return self.images

    def indices(self, split):
        return np.arange(30) if split == "train" else np.arange(30, 40)


def test_scratch_init_builds_cmcs_two_streams_untrained_and_seeded():
    from selfstudy.methods import build_encoder

    a = scratch_init(_FakeDataset(), "scratch-cmc", "resnet9-tiny", 0, "lab")
    b = scratch_init(_FakeDataset(), "scratch-cmc", "resnet9-tiny", 0, "lab")
    c = scratch_init(_FakeDataset(), "scratch-cmc", "resnet9-tiny", 1, "lab")
    assert a["method"] == "cmc" and a["input"]["space"] == "lab"
    keys = sorted(a["state_dict"])
    assert keys == sorted(b["state_dict"])
    assert all(bool((a["state_dict"][k] == b["state_dict"][k]).all()) for k in keys)
    assert any(not bool((a["state_dict"][k] == c["state_dict"][k]).all()) for k in keys
               if a["state_dict"][k].is_floating_point())
    enc = build_encoder(a)  # loads strictly: the shape finetuning will build
    assert enc.out_dim == a["out_dim"]


POINTS = [
    {"dataset": "1111", "pretrained_on": "1111", "method": "rotation", "backbone": "r9", "task": "cls", "n": 100,
     "value": 0.5, "ci_low": 0.2, "ci_high": 0.9},
    {"dataset": "1111", "pretrained_on": "0000", "method": "rotation", "backbone": "r9", "task": "cls", "n": 100,
     "value": -0.25, "ci_low": None, "ci_high": None},
    {"dataset": "0000", "pretrained_on": None, "method": "rotation", "backbone": "r9", "task": "cls", "n": 100,
     "value": 1.0, "ci_low": 0.5, "ci_high": 1.5},
    {"dataset": "0000", "pretrained_on": "1111", "method": "rotation", "backbone": "r9", "task": "cls", "n": 100,
     "value": float("nan")},
    {"dataset": "0000", "method": "cmc", "backbone": "r9", "task": "cls", "n": 100, "value": 2.0},
]


def test_transfer_matrix_values_and_intervals():
    mats = transfer_matrices(POINTS)
    assert [(m.method, m.n) for m in mats] == [("cmc", 100), ("rotation", 100)]
    m = transfer_matrix(POINTS, method="rotation", backbone="r9", task="cls", n=100)
    assert m.rows == m.cols == ("0000", "1111")
    assert m.get("1111", "1111") == (0.5, 0.2, 0.9)
    assert m.get("0000", "1111") == (-0.25, None, None)
    assert m.get("0000", "0000") == (1.0, 0.5, 1.5)  # pretrained_on None: the same dataset
    assert math.isnan(m.get("1111", "0000")[0])
    text = render_markdown(m)
    assert "| ---- | +1.00 [+0.50, +1.50] | -0.25 |" in text
    assert "| TCVL | n/m | +0.50 [+0.20, +0.90] |" in text
    cmc = transfer_matrix(POINTS, method="cmc", backbone="r9", task="cls", n=100)
    assert cmc.rows == cmc.cols == ("0000",) and render_markdown(cmc).count("\n") == 4
    assert m.to_dict()["cells"][0] == {"pretrained_on": "0000", "finetuned_on": "0000", "value": 1.0,
                                       "ci_low": 0.5, "ci_high": 1.5}


def test_transfer_matrix_refuses_a_pair_twice_and_missing_keys():
    with pytest.raises(UserError, match="two utility points"):
        transfer_matrices([POINTS[0], dict(POINTS[0])])
    with pytest.raises(UserError, match="'n' is missing"):
        transfer_matrices([{"dataset": "1111", "method": "m", "backbone": "b", "task": "t"}])
    with pytest.raises(UserError, match="no utility points"):
        transfer_matrix(POINTS, method="vae", backbone="r9", task="cls", n=100)


def test_the_paper_preset_keeps_every_recorded_cell_and_every_preset_validates():
    from pathlib import Path

    from selfstudy.study.estimate import summary_line

    # Its pretraining cells do not depend on the finetune budgets (which the preset may retune); the
    # preset's ShapeNet-like 2,400 models per class is new data, so with the recorded 240 pinned.
    old = {c.id for c in expand(load_spec(str(Path(__file__).parent / "data" / "paper_recorded.yaml"))).pretrain}
    assert old <= {c.id for c in expand(load_spec("paper", ["datasets.models_per_class=240"])).pretrain}
    assert len(old) == 144
    new = expand(load_spec("paper"))
    assert {c.config["dataset"]["models_per_class"] for c in new.pretrain} == {2400}
    assert not old & {c.id for c in new.pretrain}
    assert {c.backbone for c in new.pretrain} == {"resnet9", "resnet50"}
    assert {c.method for c in new.downstream} == {"scratch", "scratch-cmc", "vae", "rotation", "cmc", "amdim"}
    counts = {}
    for name in ("paper", "paper-dense", "paper-transfer", "findings"):
        plan = expand(load_spec(name))
        counts[name] = (len(plan.pretrain), len(plan.downstream), len(plan.checks))
        assert "GPU-hours" in summary_line(plan) and "assumed" in summary_line(plan)
    assert counts == {"paper": (288, 10368, 432), "paper-dense": (144, 6912, 576),
                      "paper-transfer": (144, 5400, 0), "findings": (12, 768, 128)}
    grid = expand(load_spec("paper-transfer"))
    assert len({(c.pretrained_on, c.dataset) for c in grid.downstream if c.method == "cmc"}) == 144


BLOCKS = """
name: four
datasets:
  - {factors: [TCVL, '0000'], n: 600, res: 32, models_per_class: 12, tasks: [classification, pose]}
  - {factors: [TCVL], n: 400, res: 64, models_per_class: 12, multi: true, tasks: [segmentation, depth]}
methods: {scratch: {}, rotation: {epochs: 1}}
backbones: [resnet9-tiny]
protocols: [finetune]
labels: [20, 100]
budget_check: off
"""


def test_dataset_blocks_give_each_task_its_scene_type_and_resolution(tmp_path):
    p = tmp_path / "four.yaml"
    p.write_text(BLOCKS)
    spec = load_spec(p)
    assert spec.tasks == ("classification", "pose", "segmentation", "depth")
    assert [(b.res, b.multi, b.tasks) for b in spec.data_blocks] == [
        (32, False, ("classification", "pose")), (64, True, ("segmentation", "depth"))]
    plan = expand(spec)
    assert set(plan.datasets) == {"1111", "0000", "1111#1"}
    assert plan.datasets["1111#1"]["res"] == 64 and plan.datasets["1111#1"]["multi"] is True
    tasks = {(c.data_key, c.task) for c in plan.downstream}
    assert tasks == {("1111", "classification"), ("1111", "pose"), ("0000", "classification"),
                     ("1111#1", "segmentation"), ("1111#1", "depth")}  # no pose on the fixed-view 0000
    assert all(c.dataset in ("1111", "0000") for c in plan.all)
    dense = [c for c in plan.downstream if c.task == "depth" and c.method == "rotation"]
    pre = {c.id: c for c in plan.pretrain}[dense[0].pretrain_id]
    assert pre.block == 1 and pre.config["dataset"]["res"] == 64 and spec.block(pre).res == 64
    assert spec.dataset_config("1111#1").multi and not spec.dataset_config("1111").multi
    # 3 datasets x 1 SSL method pretrained; (2 + 1 + 2) task-datasets x 2 labels x 2 arms
    assert (len(plan.pretrain), len(plan.downstream)) == (3, 20)
    again = load_spec(p).to_dict()
    assert [c.id for c in expand(load_spec(p)).all] == [c.id for c in plan.all]
    assert again["datasets"][1]["tasks"] == ["segmentation", "depth"]
    # The first block alone is the study it was as a single mapping: the same ids.
    single = tmp_path / "single.yaml"
    single.write_text(BLOCKS.replace("  - {factors: [TCVL], n: 400, res: 64, models_per_class: 12, multi: true, "
                                     "tasks: [segmentation, depth]}\n", "").replace(
        "  - {factors: [TCVL, '0000'], n: 600, res: 32, models_per_class: 12, tasks: [classification, pose]}",
        "  {factors: [TCVL, '0000'], n: 600, res: 32, models_per_class: 12}") + "tasks: [classification, pose]\n")
    one = {c.id for c in expand(load_spec(single)).all}
    assert one == {c.id for c in plan.all if c.block == 0}


def test_a_task_on_one_dataset_in_two_blocks_is_refused(tmp_path):
    p = tmp_path / "two.yaml"
    p.write_text(BLOCKS.replace("tasks: [segmentation, depth]", "tasks: [segmentation, classification]")
                 .replace("multi: true, ", ""))
    with pytest.raises(UserError, match="task classification would run on dataset TCVL in datasets\\[0\\] and "
                                        "datasets\\[1\\]"):
        load_spec(p)
    p.write_text(BLOCKS.replace("tasks: [segmentation, depth]", "tasks: [segmentation, depht]"))
    with pytest.raises(UserError, match="datasets\\[1\\]"):
        load_spec(p)


def _row(dataset, method, n, seed, acc, pretrained_on=None):
    return {"cell_id": f"{dataset}-{method}-{pretrained_on}-{n}-{seed}", "dataset": dataset, "method": method,
            "pretrained_on": pretrained_on, "backbone": "resnet9-tiny", "task": "classification",
            "protocol": "finetune", "n_labels": n, "seed": seed, "status": "done", "metric": "accuracy",
            "higher_is_better": True, "test": acc, "val": acc, "steps": 10, "still_improving": False}


def test_the_analysis_keeps_each_pretraining_dataset_an_arm_and_cmc_against_its_own_scratch():
    from selfstudy.study.analysis import analyse, summary_rows
    from selfstudy.study.transfer import arm_name, baseline_arm, split_arm, transfer_html

    counts = (100, 300, 1000, 3000)
    rows = []
    for s, jitter in ((0, 0.0), (1, 0.004), (2, -0.004)):
        for i, n in enumerate(counts):
            base = 0.2 + 0.1 * i + jitter
            rows.append(_row("1111", "scratch", n, s, base))
            rows.append(_row("1111", "scratch-cmc", n, s, base - 0.05))
            rows.append(_row("1111", "cmc", n, s, base, pretrained_on="1111"))
            rows.append(_row("1111", "rotation", n, s, base + 0.05, pretrained_on="1111"))
            rows.append(_row("1111", "rotation", n, s, base + 0.02, pretrained_on="0000"))
    assert arm_name(rows[-1]) == "rotation@0000" and arm_name(rows[-2]) == "rotation"
    assert split_arm("rotation@0000") == ("rotation", "0000") and split_arm("cmc") == ("cmc", None)
    assert baseline_arm("cmc", ["scratch", "scratch-cmc"]) == "scratch-cmc"
    assert baseline_arm("rotation@0000", ["scratch", "scratch-cmc"]) == "scratch"
    analysis = analyse(rows, bootstrap=200)
    g = analysis.groups[0]
    assert {a for a, _ in g.arms} == {"scratch", "scratch-cmc", "cmc", "rotation", "rotation@0000"}
    assert g.baselines == {"cmc": "scratch-cmc", "rotation": "scratch", "rotation@0000": "scratch",
                           "scratch-cmc": "scratch"}
    recs = summary_rows(analysis)
    assert {(r["method"], r["baseline"]) for r in recs} >= {("cmc", "scratch-cmc"), ("rotation", "scratch")}
    # CMC equals scratch on the full network but beats scratch-cmc at every count: its utility is > 0.
    cmc = [r for r in recs if r["method"] == "cmc" and r["n"] == 300][0]
    assert cmc["delta"] == pytest.approx(0.05)
    mats = transfer_matrices(points_from_records(recs))
    rot = next(m for m in mats if m.method == "rotation" and m.n == 300)
    assert rot.rows == ("0000", "1111") and rot.cols == ("1111",)
    assert rot.get("1111", "1111")[0] > rot.get("0000", "1111")[0] > 0
    html = transfer_html(recs)
    assert html.startswith("<h2>Transfer</h2>") and "rotation" in html and "cmc (" not in html
    assert transfer_html([r for r in recs if "@" not in r["method"]]) == ""
