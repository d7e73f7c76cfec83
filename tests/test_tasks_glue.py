"""GLUE/SuperGLUE tasks read from tiny files in the official release formats."""

import pytest
import torch

from dept_vl.tasks import get_task
from tests.fixtures_official import write_jsonl, write_tsv

COLA_ROWS = [["gj04", "1", "", "Our friends won't buy this analysis."],
             ["gj04", "0", "*", "They drank the pub."],
             ["gj04", "1", "", "The more we study verbs, the crazier they get."],
             ["gj04", "0", "*", "Day by day the facts getting murkier."]]


@pytest.fixture
def glue_dir(tmp_path):
    root = tmp_path / "glue_data"
    write_tsv(root / "CoLA" / "train.tsv", None, COLA_ROWS)
    write_tsv(root / "CoLA" / "dev.tsv", None, COLA_ROWS)
    write_tsv(root / "CoLA" / "test.tsv", ["index", "sentence"], [["0", "Bill whistled past the house."]])
    mrpc = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    write_tsv(root / "MRPC" / "train.tsv", mrpc, [["1", "702876", "702977", "He said so .", "So he said ."]])
    write_tsv(root / "MRPC" / "dev.tsv", mrpc, [["0", "1", "2", "A cat sat .", "A dog ran ."],
                                                ["1", "3", "4", "It rained .", "Rain fell ."]])
    sts = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    write_tsv(root / "STS-B" / "train.tsv", sts, [["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
                                                   "A plane is taking off.", "An air plane is taking off.", "3.75"]])
    write_tsv(root / "STS-B" / "dev.tsv", sts, [[str(i), "g", "f", "y", "o", "s", "s", f"A{i}", f"B{i}", v]
                                               for i, v in enumerate(["5.000", "2.57", "0.0", "3.64"])])
    mnli = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    write_tsv(root / "MNLI" / "train.tsv", mnli, [["0", "1", "1e", "gov", "(", "(", "(", "(", "P one .", "H one .",
                                                   "neutral", "neutral"]])
    for name, label in (("dev_matched.tsv", "entailment"), ("dev_mismatched.tsv", "contradiction")):
        write_tsv(root / "MNLI" / name, mnli, [["0", "1", "1e", "gov", "(", "(", "(", "(", f"P {name}", "H .",
                                                label, label]])
    write_tsv(root / "RTE" / "train.tsv", ["index", "sentence1", "sentence2", "label"],
              [["0", "Dana sleeps.", "Someone sleeps.", "entailment"]])
    qnli = ["index", "question", "sentence", "label"]
    write_tsv(root / "QNLI" / "train.tsv", qnli,
              [[str(i), f"q{i}?", f"s{i}.", "entailment" if i % 2 else "not_entailment"] for i in range(1010)])
    write_tsv(root / "QNLI" / "dev.tsv", qnli, [["0", "Who?", "Him.", "entailment"]])
    write_tsv(root / "QQP" / "train.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
              [["0", "1", "2", "How old?", "What age?", "1"]])
    write_tsv(root / "SST-2" / "train.tsv", ["sentence", "label"], [["a gorgeous film ", "1"]])
    write_jsonl(root / "BoolQ" / "train.jsonl", [{"question": "is it wet", "passage": "Water is wet.",
                                                  "idx": 0, "label": True}])
    write_jsonl(root / "CB" / "train.jsonl", [{"premise": "He knew it.", "hypothesis": "It was so.",
                                               "label": "neutral", "idx": 3}])
    return root


def test_cola_default_and_reference_formats(glue_dir):
    task = get_task("cola")
    ex = task.load("train", data_dir=str(glue_dir))
    assert [e.input_text for e in ex[:2]] == ["cola sentence: Our friends won't buy this analysis.",
                                              "cola sentence: They drank the pub."]
    assert [e.target_text for e in ex] == ["acceptable", "unacceptable", "acceptable", "unacceptable"]
    assert ex[0].label == "acceptable" and ex[0].image is None
    ref = task.load("train", data_dir=str(glue_dir / "CoLA"), fmt="reference")  # task folder works too
    assert ref[1].input_text == "cola sentence: They drank the pub." and ref[1].target_text == "0"


def test_small_set_split_rule_halves_validation(glue_dir):
    task = get_task("cola")
    dev = task.load("dev", data_dir=str(glue_dir))
    test = task.load("test", data_dir=str(glue_dir))
    order = torch.randperm(4, generator=torch.Generator().manual_seed(42)).tolist()
    assert [e.meta["label_value"] for e in dev] == [[1, 0, 1, 0][i] for i in order[:2]]
    assert len(dev) == 2 and len(test) == 2
    assert {e.id for e in dev}.isdisjoint({e.id for e in test})
    official = task.load("test", data_dir=str(glue_dir), split_rule="official")
    assert official[0].input_text == "cola sentence: Bill whistled past the house."
    assert official[0].target_text == "" and official[0].label is None


def test_large_set_split_rule_holds_out_1000_train(glue_dir):
    task = get_task("qnli")
    train = task.load("train", data_dir=str(glue_dir))
    dev = task.load("dev", data_dir=str(glue_dir))
    test = task.load("test", data_dir=str(glue_dir))
    assert (len(train), len(dev), len(test)) == (10, 1000, 1)
    assert {e.id for e in train}.isdisjoint({e.id for e in dev})
    assert test[0].input_text == "qnli question: Who? sentence: Him." and test[0].target_text == "entailment"


def test_pair_tasks_and_label_maps(glue_dir):
    mrpc = get_task("mrpc").load("train", data_dir=str(glue_dir))[0]
    assert mrpc.input_text == "mrpc sentence1: He said so . sentence2: So he said ."
    assert mrpc.target_text == "equivalent"
    mnli = get_task("mnli")
    assert mnli.load("train", data_dir=str(glue_dir), fmt="reference")[0].target_text == "1"
    assert mnli.load("dev", data_dir=str(glue_dir))[0].target_text == "contradiction"  # mismatched
    assert mnli.load("test", data_dir=str(glue_dir))[0].input_text.startswith("mnli premise: P dev_matched")
    rte = get_task("rte").load("train", data_dir=str(glue_dir), fmt="reference")[0]
    assert rte.input_text == "rte sentence1: Dana sleeps. sentence2: Someone sleeps." and rte.target_text == "0"
    qqp = get_task("qqp").load("train", data_dir=str(glue_dir), split_rule="official")[0]
    assert qqp.input_text == "qqp question1: How old? question2: What age?" and qqp.target_text == "duplicate"
    sst = get_task("sst2").load("dev", data_dir=str(glue_dir))[0]  # large set: dev from train
    assert sst.input_text == "sst2 sentence: a gorgeous film" and sst.target_text == "positive"


def test_stsb_targets(glue_dir):
    task = get_task("stsb")
    assert task.kind == "regression" and task.balance_field is None
    train = task.load("train", data_dir=str(glue_dir))[0]
    assert train.target_text == "3.8" and train.label is None  # nearest 0.2
    rows = task.load("dev", data_dir=str(glue_dir), split_rule="official")
    assert [e.target_text for e in rows] == ["5.0", "2.6", "0.0", "3.6"]
    ref = task.load("dev", data_dir=str(glue_dir), split_rule="official", fmt="reference")
    assert [e.target_text for e in ref] == ["5.0", "2.6", "0.0", "3.6"]  # one decimal
    scores = task.evaluate(["5", "2.6", "0.1", "3.5"], rows)
    assert scores["headline"] == pytest.approx((scores["pearson"] + scores["spearmanr"]) / 2)


def test_superglue_jsonl(glue_dir):
    boolq = get_task("boolq").load("train", data_dir=str(glue_dir))[0]
    assert boolq.input_text == "boolq question: is it wet passage: Water is wet." and boolq.target_text == "true"
    ref = get_task("boolq").load("train", data_dir=str(glue_dir), fmt="reference")[0]
    assert ref.input_text.startswith("superglue-boolq question:") and ref.target_text == "1"
    cb = get_task("cb").load("train", data_dir=str(glue_dir))[0]
    assert cb.target_text == "neutral" and cb.id == "cb-train-3"
    assert get_task("cb").load("train", data_dir=str(glue_dir), fmt="reference")[0].target_text == "2"


def test_evaluate_uses_the_format_labels(glue_dir):
    task = get_task("cola")
    ref = task.load("train", data_dir=str(glue_dir), fmt="reference")
    perfect = task.evaluate([e.target_text for e in ref], ref)
    assert perfect["headline"] == pytest.approx(1.0) and perfect["matthews_correlation"] == pytest.approx(1.0)
    words = task.evaluate(["acceptable"] * 4, ref)  # label words are invalid in the digit format
    assert words["accuracy"] == 0.0 and words["invalid_rate"] == 1.0


def test_missing_files_name_the_expected_path(tmp_path):
    with pytest.raises(ValueError, match=r"no dev\.tsv in .*RTE"):
        get_task("rte").load("dev", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown options"):
        get_task("rte").load("dev", data_dir=str(tmp_path), nonsense=1)
    with pytest.raises(ValueError, match="split_rule"):
        get_task("rte").load("dev", data_dir=str(tmp_path), split_rule="random")
    with pytest.raises(ValueError, match="no format 'plain'"):
        get_task("rte").load("dev", data_dir=str(tmp_path), fmt="plain")


# ---------------------------------------------------------------- damaged release files
RTE_HEADER = ["index", "sentence1", "sentence2", "label"]


def test_train_file_without_its_label_column_names_the_file_and_the_columns(tmp_path):
    write_tsv(tmp_path / "RTE" / "train.tsv", RTE_HEADER[:3], [["0", "Dana sleeps.", "Someone sleeps."]])
    with pytest.raises(ValueError, match=r"train\.tsv has no label column 'label'.*index.*sentence1.*sentence2") as err:
        get_task("rte").load("train", data_dir=str(tmp_path))
    assert str(tmp_path / "RTE" / "train.tsv") in str(err.value)
    mrpc = ["#1 ID", "#2 ID", "#1 String", "#2 String"]  # MRPC's label column is "Quality"
    write_tsv(tmp_path / "MRPC" / "dev.tsv", mrpc, [["1", "2", "A cat sat .", "A dog ran ."]])
    with pytest.raises(ValueError, match=r"dev\.tsv has no label column 'Quality'"):
        get_task("mrpc").load("dev", data_dir=str(tmp_path))
    # test files of the release have no labels: still read, with empty targets
    write_tsv(tmp_path / "RTE" / "test.tsv", RTE_HEADER[:3], [["0", "Dana sleeps.", "Someone sleeps."]])
    (ex,) = get_task("rte").load("test", data_dir=str(tmp_path), split_rule="official")
    assert ex.target_text == "" and ex.label is None


def test_header_only_or_empty_file_has_no_examples(tmp_path):
    write_tsv(tmp_path / "RTE" / "train.tsv", RTE_HEADER, [])
    with pytest.raises(ValueError, match=r"train\.tsv has no examples") as err:
        get_task("rte").load("train", data_dir=str(tmp_path))
    assert str(tmp_path / "RTE" / "train.tsv") in str(err.value)
    (tmp_path / "CoLA").mkdir()
    (tmp_path / "CoLA" / "train.tsv").write_text("")  # headerless format, and empty
    with pytest.raises(ValueError, match=r"train\.tsv has no examples"):
        get_task("cola").load("train", data_dir=str(tmp_path))
    (tmp_path / "BoolQ").mkdir()
    (tmp_path / "BoolQ" / "train.jsonl").write_text("\n")
    with pytest.raises(ValueError, match=r"train\.jsonl has no examples"):
        get_task("boolq").load("train", data_dir=str(tmp_path))


def test_ragged_row_names_the_file_and_the_line(tmp_path):
    write_tsv(tmp_path / "RTE" / "train.tsv", RTE_HEADER,
              [["0", "Dana sleeps.", "Someone sleeps.", "entailment"], ["1", "Dana sleeps."]])
    with pytest.raises(ValueError, match=r"train\.tsv, line 3: 2 fields, the header has 4") as err:
        get_task("rte").load("train", data_dir=str(tmp_path))
    assert str(tmp_path / "RTE" / "train.tsv") in str(err.value)
    write_tsv(tmp_path / "CoLA" / "train.tsv", None, COLA_ROWS[:2] + [["gj04", "1", "The book was read."]])
    with pytest.raises(ValueError, match=r"train\.tsv, line 3: 3 fields, .*4"):
        get_task("cola").load("train", data_dir=str(tmp_path))


def test_official_quirks_still_read(glue_dir):
    """CoLA's headerless train/dev files and its test file with a header, MNLI's columns, MRPC's byte-order
    mark; quotes are text, not quoting."""
    write_tsv(glue_dir / "SST-2" / "train.tsv", ["sentence", "label"],
              [['"a gorgeous " film', "1"], ["it 's \"bad", "0"]])
    rows = get_task("sst2").load("train", data_dir=str(glue_dir), split_rule="official")
    assert [e.input_text for e in rows] == ['sst2 sentence: "a gorgeous " film', 'sst2 sentence: it \'s "bad']
    assert len(get_task("cola").load("train", data_dir=str(glue_dir))) == 4
    assert get_task("cola").load("test", data_dir=str(glue_dir), split_rule="official")[0].target_text == ""
    mnli = get_task("mnli").load("dev", data_dir=str(glue_dir), split_rule="official")
    assert mnli[0].target_text == "entailment"
    # MRPC's release files begin with a UTF-8 byte-order mark before "Quality"
    mrpc = glue_dir / "MRPC" / "train.tsv"
    mrpc.write_bytes(b"\xef\xbb\xbf" + mrpc.read_bytes())
    (ex,) = get_task("mrpc").load("train", data_dir=str(glue_dir))
    assert ex.target_text == "equivalent" and ex.input_text == "mrpc sentence1: He said so . sentence2: So he said ."


def test_superglue_record_without_a_field_or_label_names_the_file_and_line(tmp_path):
    write_jsonl(tmp_path / "BoolQ" / "train.jsonl", [{"question": "is it", "passage": "It is.", "label": True},
                                                      {"question": "is it", "label": False}])
    with pytest.raises(ValueError, match=r"train\.jsonl, line 2: no 'passage'"):
        get_task("boolq").load("train", data_dir=str(tmp_path))
    write_jsonl(tmp_path / "BoolQ" / "train.jsonl", [{"question": "is it", "passage": "It is."}])
    with pytest.raises(ValueError, match=r"train\.jsonl, line 1: no 'label'"):
        get_task("boolq").load("train", data_dir=str(tmp_path))
    write_jsonl(tmp_path / "BoolQ" / "test.jsonl", [{"question": "is it", "passage": "It is.", "idx": 0}])
    (ex,) = get_task("boolq").load("test", data_dir=str(tmp_path), split_rule="official")
    assert ex.target_text == ""
    (tmp_path / "BoolQ" / "val.jsonl").write_text('{"question": "is it", "passage": \n')
    with pytest.raises(ValueError, match=r"val\.jsonl, line 1: not valid JSON"):
        get_task("boolq").load("dev", data_dir=str(tmp_path))


def test_qqp_skips_rows_cut_short_with_one_warning(tmp_path):
    """The QQP release has a few rows with missing fields (readers of that file skip them); dept-vl skips
    them too, says how many, and keeps every whole row."""
    from dept_vl.tasks import get_task

    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    rows = ["1\t1\t2\twhat is a?\twhat is b?\t0\n", "2\t3\t4\tbroken row\n", "3\t5\t6\thow to x?\thow do I x?\t1\n"]
    (tmp_path / "train.tsv").write_text(header + "".join(rows))
    (tmp_path / "dev.tsv").write_text(header + rows[0] + rows[2])
    with pytest.warns(UserWarning, match="skipped 1 rows .*line 3"):
        examples = get_task("qqp").load("train", data_dir=str(tmp_path), split_rule="official")
    assert [e.label for e in examples] == ["not_duplicate", "duplicate"]
