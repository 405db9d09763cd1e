import collections

import pytest
import yaml

from selfstudy.errors import UserError
from selfstudy.study.spec import expand, load_spec, preset_names, spec_from_dict


def _raw(**kw):
    raw = {
        "name": "t",
        "datasets": {"factors": ["TCVL", "0000"], "n": 6000, "res": 32},
        "methods": {"scratch": {}, "rotation": {"epochs": 2}, "simclr": {"epochs": 1}},
        "backbones": ["resnet9-tiny"],
        "tasks": ["classification", "pose"],
        "protocols": ["finetune", "linear"],
        "labels": [100, 1000],
        "seeds": [0, 1],
    }
    raw.update(kw)
    return raw


def test_expansion_counts_and_skipped_tasks():
    plan = expand(spec_from_dict(_raw()))
    # 2 datasets x 2 SSL methods x 1 backbone x 2 seeds
    assert len(plan.pretrain) == 8
    # TCVL: 2 tasks x 2 protocols x 2 n x 3 methods x 2 seeds; ---- has no pose (V=0): half of that
    assert len(plan.downstream) == 48 + 24
    # budget: auto by default: every finetune cell (36 of them) has its first check at twice the budget
    assert len(plan.checks) == 36 and {c.config["budget_factor"] for c in plan.checks} == {2.0}
    assert len({c.id for c in plan.all}) == len(plan) == 80 + 36
    assert len(plan.notes) == 1 and "pose" in plan.notes[0] and "----" in plan.notes[0]
    assert not [c for c in plan.downstream if c.dataset == "0000" and c.task == "pose"]
    # scratch runs under every protocol: finetune is the baseline, probes give the random-init floor
    scratch = collections.Counter(c.protocol for c in plan.downstream if c.method == "scratch")
    assert scratch == {"finetune": 12, "linear": 12}


def test_multi_object_datasets_run_the_dense_tasks_only():
    raw = _raw(datasets={"factors": ["TCVL"], "n": 6000, "res": 32, "multi": True},
               tasks=["classification", "segmentation", "depth"], protocols=["finetune", "linear", "knn"])
    spec = spec_from_dict(raw)
    assert spec.datasets.multi and spec.to_dict()["datasets"]["multi"] is True
    assert spec_from_dict(spec.to_dict()) == spec
    plan = expand(spec)
    assert {c.task for c in plan.downstream} == {"segmentation", "depth"}
    assert {c.protocol for c in plan.downstream} == {"finetune", "linear"}  # no k-NN for dense tasks
    # 2 tasks x 2 protocols x 2 label counts x 3 methods x 2 seeds
    assert len(plan.downstream) == 48
    assert all(c.config["dataset"]["multi"] is True for c in plan.all)
    assert any("skipped task classification on TCVL: multi-object scenes" in n for n in plan.notes)
    assert any("skipped knn for task segmentation: k-NN votes for classes" in n for n in plan.notes)
    # The same grid on single-object data is another dataset: other cell ids.
    single = expand(spec_from_dict({**raw, "datasets": {**raw["datasets"], "multi": False}}))
    assert not {c.id for c in single.all} & {c.id for c in plan.all}


def test_knn_is_skipped_for_regression_tasks_on_single_objects():
    plan = expand(spec_from_dict(_raw(tasks=["classification", "pose-regression"],
                                      protocols=["finetune", "knn"])))
    assert not [c for c in plan.downstream if c.task == "pose-regression" and c.protocol == "knn"]
    assert [c for c in plan.downstream if c.task == "pose-regression" and c.protocol == "finetune"]
    assert [c for c in plan.downstream if c.task == "classification" and c.protocol == "knn"]


def test_a_spec_without_scratch_says_it_has_no_utility():
    plan = expand(spec_from_dict(_raw(methods=["rotation"])))
    assert any("no scratch method" in n for n in plan.notes)
    assert all(c.method == "rotation" for c in plan.all)


def test_pretraining_is_shared_by_downstream_cells():
    plan = expand(spec_from_dict(_raw()))
    by_id = {c.id: c for c in plan.pretrain}
    keys = [(c.dataset, c.method, c.backbone, c.seed) for c in plan.pretrain]
    assert len(set(keys)) == len(keys)  # one pretraining cell per (dataset, method, backbone, seed)
    uses = collections.Counter()
    for c in plan.downstream:
        if c.method == "scratch":
            assert c.pretrain_id is None and c.config["pretrain"] is None
            continue
        pre = by_id[c.pretrain_id]
        assert (pre.dataset, pre.method, pre.backbone, pre.seed) == (c.dataset, c.method, c.backbone, c.seed)
        assert c.config["pretrain"] == pre.id
        uses[pre.id] += 1
    assert set(uses) == set(by_id)
    # TCVL: 2 tasks x 2 protocols x 2 label counts reuse one checkpoint; ----: 1 task
    assert sorted(collections.Counter(uses.values()).items()) == [(4, 4), (8, 4)]


def test_a_shared_pretraining_serves_every_seed():
    plain = expand(spec_from_dict(_raw(seeds=[0, 1, 2])))
    raw = _raw(seeds=[0, 1, 2])
    raw["methods"] = {"scratch": {}, "rotation": {"epochs": 2, "shared": True}, "simclr": {"epochs": 1}}
    spec = spec_from_dict(raw)
    plan = expand(spec)
    rot = [c for c in plan.pretrain if c.method == "rotation"]
    assert sorted((c.dataset, c.seed) for c in rot) == [("0000", 0), ("1111", 0)]  # one per dataset, seed 0
    assert len([c for c in plan.pretrain if c.method == "simclr"]) == 6  # per seed, as before
    plain_ids = {c.id for c in plain.all}
    for c in plan.downstream:
        if c.method == "rotation":
            pre = next(p for p in rot if p.id == c.pretrain_id)
            assert (pre.dataset, pre.seed) == (c.dataset, 0)
            # seed 0 is the experiment it always was; the other seeds load seed 0's checkpoint
            assert (c.id in plain_ids) == (c.seed == 0)
        else:
            assert c.id in plain_ids
    assert {c.id for c in rot} <= plain_ids  # the shared pretraining is seed 0's cell
    assert any("rotation: one pretraining (seed 0) shared by every seed" in n for n in plan.notes)
    assert spec_from_dict(spec.to_dict()) == spec  # round trip keeps shared
    assert spec.to_dict()["methods"]["rotation"]["shared"] is True
    assert "shared" not in spec.to_dict()["methods"]["simclr"]
    with pytest.raises(UserError, match="shared"):
        spec_from_dict(dict(raw, methods={"scratch": {}, "rotation": {"shared": "often"}}))
    with pytest.raises(UserError, match="scratch takes no options"):
        spec_from_dict(dict(raw, methods={"scratch": {"shared": True}, "rotation": {}}))


def test_ids_are_stable_and_follow_the_config():
    a = expand(spec_from_dict(_raw()))
    b = expand(spec_from_dict(_raw()))
    assert [c.id for c in a.all] == [c.id for c in b.all]
    # The study name and the device are not part of any experiment.
    c = expand(spec_from_dict(_raw(name="other", device="cpu", channels_last=False)))
    assert [x.id for x in c.all] == [x.id for x in a.all]

    # More rotation epochs: new rotation pretraining and rotation downstream ids, nothing else moves.
    raw = _raw()
    raw["methods"]["rotation"]["epochs"] = 3
    d = expand(spec_from_dict(raw))
    changed = {(x.kind, x.method) for x, y in zip(a.all, d.all) if x.id != y.id}
    assert changed == {("pretrain", "rotation"), ("downstream", "rotation"), ("check", "rotation")}

    # Another label count adds cells and keeps the others.
    e = expand(spec_from_dict(_raw(labels=[100, 300, 1000])))
    assert {x.id for x in a.all} < {x.id for x in e.all}


def test_protocol_budget_changes_only_that_protocol():
    a = expand(spec_from_dict(_raw()))
    b = expand(spec_from_dict(_raw(linear={"steps": 77})))
    changed = {x.protocol for x, y in zip(a.all, b.all) if x.id != y.id}
    assert changed == {"linear"}


def test_factor_spellings_and_label_shorthands():
    s = spec_from_dict(_raw(datasets={"factors": ["-CV-", 1111, "0000"], "n": 6000}, labels=["1k", 100]))
    assert s.datasets.factors == ("0110", "1111", "0000")
    assert s.labels == (100, 1000)
    with pytest.raises(UserError, match="twice"):
        spec_from_dict(_raw(datasets={"factors": ["0110", "-CV-"]}))


def test_method_list_shorthand_and_round_trip():
    raw = _raw(methods=["scratch", "rotation"])
    s = spec_from_dict(raw)
    assert [m.name for m in s.methods] == ["scratch", "rotation"]
    again = spec_from_dict(yaml.safe_load(yaml.safe_dump(s.to_dict(), sort_keys=False)))
    assert again == s
    assert [c.id for c in again.cells().all] == [c.id for c in s.cells().all]


def test_presets_load_and_overrides_apply(tmp_path):
    assert {"quick", "paper", "smoke"} <= set(preset_names())
    q = load_spec("quick", ["labels=[100,1000]", "methods.rotation.epochs=3", "seeds=[0,1]"])
    assert q.labels == (100, 1000) and q.method("rotation").epochs == 3 and q.seeds == (0, 1)
    paper = load_spec("paper")
    from selfstudy.factors import PAPER_DATASETS

    assert paper.datasets.factors == PAPER_DATASETS
    assert paper.labels == (100, 250, 1000, 4000, 20000, 50000, 100000, 200000)
    assert [m.name for m in paper.methods] == ["scratch", "scratch-cmc", "vae", "rotation", "cmc", "amdim"]
    assert paper.backbones == ("resnet9", "resnet50")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_raw(methods=["scratch", "rotation"])))
    assert load_spec(f, ["methods.rotation.epochs=4"]).method("rotation").epochs == 4


@pytest.mark.parametrize("change, fragment", [
    ({"methods": {"scratch": {}, "rotatoin": {}}}, r"unknown method 'rotatoin' \(did you mean 'rotation'\?\)"),
    ({"tasks": ["classification", "segmentatio"]}, "unknown task"),
    ({"backbones": ["resnet7"]}, "unknown backbone 'resnet7'"),
    ({"protocols": ["finetune", "probe"]}, "unknown protocol 'probe'"),
    ({"datasets": {"factors": ["TCXL"]}}, "bad factor string 'TCXL'"),
    ({"datasets": {"factors": ["TCVL"], "n": -5}}, "datasets.n must be a whole number"),
    ({"labels": [-100]}, "label count -100 is not allowed"),
    ({"labels": [0, 100]}, "label count 0 is not allowed"),
    ({"labels": [1.5]}, "label count 1.5 is not allowed"),
    ({"lables": [100]}, r"unknown key 'lables' \(did you mean 'labels'\?\)"),
    ({"datasets": {"factors": ["TCVL"], "size": 10}}, "unknown key datasets.'size'"),
    ({"methods": {"rotation": {"epoch": 3}}}, r"unknown key methods.rotation.'epoch'"),
    ({"methods": {"rotation": {"epochs": 0}}}, "epochs must be a whole number >= 1"),
    ({"methods": {"rotation": {"overrides": {"lrr": 1}}}}, "unknown option"),
    ({"methods": {"rotation": {"overrides": {"lr": -1}}}}, "lr"),
    ({"methods": {"scratch": {"epochs": 3}}}, "scratch takes no options"),
    ({"methods": {}}, "'methods' is missing or empty"),
    ({"seeds": [0, 0]}, "seeds lists a seed twice"),
    ({"seeds": [-1]}, "each seed must be a whole number >= 0"),
    ({"device": "tpu"}, "device 'tpu' is not allowed"),
    ({"precision": "fp8"}, "precision 'fp8' is not allowed; allowed: fp32, bf16, fp16"),
    ({"space": "hsv"}, "space 'hsv' is not allowed"),
    ({"channels_last": "yes please"}, "channels_last must be true or false"),
    ({"name": "a b"}, "name 'a b' is not allowed"),
    ({"labels": [100, 5001]}, r"label count 5001 is larger than the training split of dataset TCVL \(5000 images"),
    ({"datasets": {"factors": ["TCVL"], "n": 600}}, "label count 1000 is larger than the training split"),
    ({"datasets": {"factors": ["TCVL"], "models_per_class": 5}}, "datasets: bad models_per_class 5"),
    ({"datasets": {"factors": ["TCVL"], "res": 30}}, "datasets: bad resolution 30"),
    ({"device": "cpu", "precision": "fp16"}, "fp16 needs a CUDA device"),
    ({"finetune": {"epochz": 3}}, "finetune: .*epochz"),
    ({"finetune": {"max_steps": 0}}, "finetune: .*max_steps"),
    ({"linear": {"stepz": 3}}, "linear: .*stepz"),
    ({"knn": {"k": 0}}, "knn: .*k=0"),
    ({"datasets": {"factors": ["TCVL"], "multi": "yes"}}, "datasets.multi='yes' is not allowed; datasets.multi must be true or false"),
])
def test_bad_specs_are_one_line_user_errors(change, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        spec_from_dict(_raw(**change))
    assert "\n" not in str(e.value)


def test_bad_sources_and_overrides():
    with pytest.raises(UserError, match="no spec file or preset named 'quik'"):
        load_spec("quik")
    with pytest.raises(UserError, match="unknown key 'lables'"):
        load_spec("quick", ["lables=[1]"])
    with pytest.raises(UserError, match="key=value"):
        load_spec("quick", ["labels"])


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_spec(f)
    f.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="a study spec is a YAML mapping"):
        load_spec(f)


def test_budget_check_cells():
    raw = _raw(budget_check={"factor": 3, "labels": [100], "methods": ["scratch", "rotation"]})
    spec = spec_from_dict(raw)
    assert spec.budget_check == {"mode": "auto", "factor": 3.0, "cap": 8.0, "labels": [100],
                                 "methods": ["scratch", "rotation"], "tolerance": None, "noise_k": 1.0}
    assert spec_from_dict(spec.to_dict()) == spec
    plan = expand(spec)
    base = {c.id: c for c in plan.downstream}
    # finetune cells at n=100 of scratch and rotation: 2 datasets-tasks... count them from the grid
    want = [c for c in plan.downstream if c.protocol == "finetune" and c.n_labels == 100
            and c.method in ("scratch", "rotation")]
    assert len(plan.checks) == len(want) > 0 and len(plan) == len(plan.all)
    for chk in plan.checks:
        orig = base[chk.check_of]
        assert (chk.kind, chk.method, chk.task, chk.n_labels, chk.seed, chk.pretrain_id) == \
            ("check", orig.method, orig.task, orig.n_labels, orig.seed, orig.pretrain_id)
        b0, b1 = orig.config["budget"], chk.config["budget"]
        assert b1["epochs"] == 3 * b0["epochs"] and b1["max_steps"] == 3 * b0["max_steps"]
        assert b1["min_steps"] == 3 * b0["min_steps"] and b1["patience"] == b0["patience"]
        assert chk.id != orig.id and chk.label.endswith("(budget check x3)")
    assert len({c.id for c in plan.all}) == len(plan)
    # budget: auto by default (first checks at x2 on every finetune cell); off when asked; the downstream
    # ids do not depend on the checks, and a check cell's id on its factor and cell only.
    plain = expand(spec_from_dict(_raw()))
    assert {c.check_of for c in plain.checks} == {c.id for c in plan.downstream if c.protocol == "finetune"}
    assert [c.id for c in plain.downstream] == [c.id for c in plan.downstream]
    for off in ({"mode": "off"}, {"mode": False}, False, "off"):
        spec = spec_from_dict(_raw(budget_check=off))
        assert spec.budget_check == {"mode": "off"} and expand(spec).checks == []
        assert spec_from_dict(spec.to_dict()) == spec
    assert expand(spec_from_dict(_raw(budget_check={"cap": 1}))).checks == []
    # No finetune protocol: no checks by default, an error when asked for.
    assert spec_from_dict(_raw(protocols=["linear"])).budget_check == {"mode": "off"}
    with pytest.raises(UserError, match="protocols has no finetune"):
        spec_from_dict(_raw(protocols=["linear"], budget_check={"factor": 2}))


def test_budget_check_labels_outside_the_study_give_a_note():
    plan = expand(spec_from_dict(_raw(budget_check={"labels": [100, 300]})))
    assert {c.n_labels for c in plan.checks} == {100}
    assert any("budget_check.labels [300] are not among the study's labels [100, 1000]" in n for n in plan.notes)


def test_scaled_budget_rounds_steps_up():
    from selfstudy.study.spec import scaled_budget

    b = scaled_budget({"epochs": 20.0, "min_steps": 150, "max_steps": 251, "batch_size": 64, "lr": 1e-3}, 1.5)
    assert b == {"epochs": 30.0, "min_steps": 225, "max_steps": 377, "batch_size": 64, "lr": 1e-3}


@pytest.mark.parametrize("check, fragment", [
    ({"factor": 1}, r"budget_check.factor must be a number in \(1, 100\]"),
    ({"factor": "2x"}, "budget_check.factor must be a number"),
    ({"tolerance": -1}, "budget_check.tolerance must be a number >= 0"),
    ({"labels": [0]}, "label count 0 is not allowed"),
    ({"methods": ["moco"]}, "unknown budget_check.method 'moco'"),
    ({"factr": 2}, "unknown key budget_check.'factr'"),
    ({"mode": "sometimes"}, "budget_check.mode 'sometimes' is not allowed; allowed: auto, off"),
    ({"cap": 0.5}, "budget_check.cap must be a budget multiple >= 1"),
    ({"noise_k": -1}, "budget_check.noise_k must be a number >= 0"),
])
def test_bad_budget_checks(check, fragment):
    with pytest.raises(UserError, match=fragment):
        spec_from_dict(_raw(budget_check=check))
    with pytest.raises(UserError, match="budget_check re-runs finetune cells, but protocols has no finetune"):
        spec_from_dict(_raw(protocols=["linear"], budget_check={"factor": 2}))


def test_budget_check_seeds_and_the_paper_preset():
    plan = expand(spec_from_dict(_raw(budget_check={"labels": [1000], "seeds": [1]})))
    assert plan.checks and {c.seed for c in plan.checks} == {1} and {c.n_labels for c in plan.checks} == {1000}
    with pytest.raises(UserError, match="seed"):
        spec_from_dict(_raw(budget_check={"seeds": [-1]}))
    paper = load_spec("paper")
    assert paper.budget_check == {"mode": "auto", "factor": 2.0, "cap": 8.0, "labels": [1000, 20000],
                                  "seeds": [0], "tolerance": None, "noise_k": 1.0,
                                  "methods": ["scratch", "scratch-cmc", "vae", "rotation", "cmc", "amdim"]}
    checks = paper.cells().checks
    # 12 datasets x 6 arms classification + 6 V=1 datasets x 6 arms pose, at 2 label counts, seed 0,
    # for each of the 2 backbones
    assert len(checks) == (12 + 6) * 6 * 2 * 2


def test_split_sizes_come_from_the_generator_rule():
    # n=1000: 100 model groups; groups 96..99 are buckets 0..3 (train, val, test, train), so the training
    # split holds 820 images (the drifted copy of the rule counted 840).
    with pytest.raises(UserError, match=r"label count 821 is larger than the training split of dataset TCVL "
                                        r"\(820 images of datasets.n=1000\); allowed: at most 820"):
        spec_from_dict(_raw(datasets={"factors": ["TCVL"], "n": 1000}, labels=[100, 821]))
    assert spec_from_dict(_raw(datasets={"factors": ["TCVL"], "n": 1000}, labels=[100, 300])).labels == (100, 300)


def test_a_label_count_needing_more_of_a_class_than_the_training_split_holds_is_refused():
    # n=1234 (not a multiple of 12): the smallest class of TCVL's training split has 34 images (classes
    # are drawn per model group of 10), so 341 labels (35 per class) cannot be class-balanced.
    from selfstudy.data.generate import DatasetConfig

    counts = DatasetConfig(factors="TCVL", n=1234, res=32).class_counts()["train"]
    assert int(counts.min()) == 34 and int(counts.sum()) == 1014
    data = {"factors": ["TCVL"], "n": 1234}
    assert spec_from_dict(_raw(datasets=data, labels=[100, 340])).labels == (100, 340)
    with pytest.raises(UserError, match=r"label count 341 needs 35 images per class but dataset TCVL's "
                                        r"training split has only 34 of its smallest class .*allowed: at most 340"):
        spec_from_dict(_raw(datasets=data, labels=[100, 341]))


def test_a_key_given_twice_in_a_spec_file_is_refused(tmp_path):
    f = tmp_path / "twice.yaml"
    f.write_text("name: t\ndatasets: {factors: [TCVL]}\nmethods: [scratch]\ndatasets: {factors: ['0000']}\n")
    with pytest.raises(UserError, match=r"not valid YAML \(key 'datasets' is given twice \(line 2 and line 4\)") as e:
        load_spec(f)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="given twice"):
        load_spec("quick", ["finetune={lr: 1, lr: 2}"])


def test_spec_strings_stay_strings():
    # YAML already typed the spec: a quoted 'yes' or '600' is a string, not a boolean or a number.
    with pytest.raises(UserError, match="datasets.n='600' is not allowed; datasets.n must be a whole number >= 1"):
        spec_from_dict(_raw(datasets={"factors": ["TCVL"], "n": "600"}))


def test_a_spec_with_no_runnable_cell_is_refused():
    # Pose on a fixed-viewpoint dataset only: every cell would be skipped.
    spec = spec_from_dict(_raw(datasets={"factors": ["TC-L"], "n": 6000}, tasks=["pose"]))
    with pytest.raises(UserError, match=r"study t: the spec expands to no runnable cell: skipped task pose on "
                                        r"TC-L: .*V=0") as e:
        expand(spec)
    assert "\n" not in str(e.value)
