"""Task file readers: layouts of GLUE/Chinese/custom files and one-line errors naming file and line."""

from pathlib import Path

import pytest

from electra.data.glue import custom_task, get_task, load_split, read_examples
from electra.errors import ElectraError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_sst2_reads_sentence_and_label(tmp_path):
    f = write(tmp_path / "train.tsv", "sentence\tlabel\nit 's good \t1\nbad \t0\n")
    ex = read_examples(get_task("sst2"), f)
    assert [(e.texts, e.label) for e in ex] == [(("it 's good ",), "1"), (("bad ",), "0")]


def test_cola_train_is_headerless_and_test_has_an_index_header(tmp_path):
    cola = get_task("cola")
    f = write(tmp_path / "train.tsv", "gj04\t1\t\tThe dog ran.\ngj04\t0\t*\tDog the.\n")
    train = read_examples(cola, f)
    assert [(e.texts[0], e.label) for e in train] == [("The dog ran.", "1"), ("Dog the.", "0")]
    test = read_examples(cola, write(tmp_path / "test.tsv", "index\tsentence\n7\tA cat.\n"))
    assert (test[0].guid, test[0].texts, test[0].label) == ("7", ("A cat.",), None)


def test_mrpc_header_with_byte_order_mark(tmp_path):
    f = write(tmp_path / "dev.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA .\tB .\n")
    ex = read_examples(get_task("mrpc"), f)
    assert (ex[0].texts, ex[0].label) == (("A .", "B ."), "1")


def test_quotes_are_plain_text_in_tsv(tmp_path):
    f = write(tmp_path / "dev.tsv", 'index\tquestion\tsentence\tlabel\n0\t"Who?\tHe said " so\tentailment\n')
    assert read_examples(get_task("qnli"), f)[0].texts == ('"Who?', 'He said " so')


def test_wrong_column_count_names_file_and_line(tmp_path):
    f = write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    with pytest.raises(ElectraError, match=r"train\.tsv:3: expected 2 tab-separated columns .*found 3"):
        read_examples(get_task("sst2"), f)


def test_wrong_column_count_in_headerless_file(tmp_path):
    f = write(tmp_path / "dev.txt", "a\tb\t1\na\tb\n")
    with pytest.raises(ElectraError, match=r"dev\.txt:2: expected 3 tab-separated columns, found 2"):
        read_examples(get_task("lcqmc"), f, require_labels=True)


def test_unknown_label_names_file_and_line(tmp_path):
    f = write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\tpositive\n")
    with pytest.raises(ElectraError, match=r"train\.tsv:3: unknown label 'positive' \(expected one of 0, 1"):
        read_examples(get_task("sst2"), f)


def test_non_numeric_regression_label(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    f = write(tmp_path / "dev.tsv", header + "0\tg\tf\t2012\t1\ts\ts\tA\tB\thigh\n")
    with pytest.raises(ElectraError, match=r"dev\.tsv:2: label 'high' is not a number"):
        read_examples(get_task("stsb"), f)


def test_empty_split_is_an_error(tmp_path):
    write(tmp_path / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(ElectraError, match=r"dev\.tsv: no examples"):
        load_split(get_task("sst2"), tmp_path, "dev")


def test_empty_file_is_an_error(tmp_path):
    write(tmp_path / "dev.tsv", "")
    with pytest.raises(ElectraError, match="no examples"):
        load_split(get_task("sst2"), tmp_path, "dev")


def test_missing_split_file_is_an_error(tmp_path):
    with pytest.raises(ElectraError, match="no dev.tsv for the dev split of sst2"):
        load_split(get_task("sst2"), tmp_path, "dev")


def test_labelled_split_requires_the_label_column(tmp_path):
    write(tmp_path / "train.tsv", "index\tsentence\n0\tgood\n")
    with pytest.raises(ElectraError, match=r"train\.tsv:1: header has no label column 'label'"):
        load_split(get_task("sst2"), tmp_path, "train")


def test_jsonl_missing_label_field_names_file_and_line(tmp_path):
    write(tmp_path / "train.jsonl", '{"text": "good", "y": "pos"}\n{"text": "bad"}\n')
    with pytest.raises(ElectraError, match=r"train\.jsonl:2: no label field 'y'"):
        load_split(custom_task(["text"], "y"), tmp_path, "train")


def test_custom_csv_with_quoted_commas(tmp_path):
    write(tmp_path / "train.csv", 'a,b,y\n"x, y",z,1\n')
    ex = load_split(custom_task(["a", "b"], "y"), tmp_path, "train")
    assert (ex[0].texts, ex[0].label) == (("x, y", "z"), "1")


def test_custom_regression_labels_are_floats(tmp_path):
    write(tmp_path / "dev.jsonl", '{"t": "a", "score": 2.5}\n')
    assert load_split(custom_task(["t"], "score", regression=True), tmp_path, "dev")[0].label == 2.5


def test_atec_release_file_is_split_nine_to_one(tmp_path):
    rows = "".join(f"{i}\t问{i}\t答{i}\t{i % 2}\r\n" for i in range(1, 21))
    write(tmp_path / "atec_nlp_sim_train.csv", "\ufeff" + rows)
    atec = get_task("atec")
    train, dev = load_split(atec, tmp_path, "train"), load_split(atec, tmp_path, "dev")
    assert (len(train), len(dev)) == (18, 2)
    assert {e.guid for e in dev} == {"1", "11"}
    assert not {e.guid for e in train} & {e.guid for e in dev}


def test_unknown_task_is_an_error():
    with pytest.raises(ElectraError, match="unknown task 'sst3'"):
        get_task("sst3")


@pytest.mark.parametrize("task,folder,counts", [
    ("cola", "glue/CoLA", {"train": 8551, "dev": 1043, "test": 1063}),
    ("sst2", "glue/SST-2", {"train": 67349, "dev": 872, "test": 1821}),
    ("mrpc", "glue/MRPC", {"train": 3668, "dev": 408, "test": 1725}),
    ("qnli", "glue/QNLI", {"dev": 5463, "test": 5463}),
    ("wnli", "glue/WNLI", {"train": 635, "dev": 71, "test": 146}),
    ("chnsenticorp", "chnsenticorp", {"train": 9600, "dev": 1200}),
    ("lcqmc", "lcqmc", {"dev": 8802, "test": 12500}),
    ("atec", "atec", {"train": 35411, "dev": 3935}),
])
def test_shared_data_files_read_with_their_documented_counts(task, folder, counts):
    if not (DATA / folder).is_dir():
        pytest.skip("../shared/data not present")
    for split, n in counts.items():
        assert len(load_split(get_task(task), DATA / folder, split)) == n


def test_mnli_dev_matched_and_mismatched_files(tmp_path):
    header = "\t".join(["index", "promptID", "pairID", "genre", "s1b", "s2b", "s1p", "s2p", "sentence1",
                        "sentence2", "label1", "gold_label"]) + "\n"
    row = "0\t1\t1e\tfiction\t(\t(\t(\t(\tA man.\tA person.\tentailment\tentailment\n"
    write(tmp_path / "dev_matched.tsv", header + row)
    write(tmp_path / "dev_mismatched.tsv", header + row.replace("entailment", "neutral"))
    mnli = get_task("mnli")
    assert load_split(mnli, tmp_path, "dev")[0].label == "entailment"
    assert load_split(mnli, tmp_path, "dev_mismatched")[0].label == "neutral"


def test_qqp_stsb_rte_layouts(tmp_path):
    qqp = write(tmp_path / "qqp.tsv",
                "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n5\t1\t2\tA?\tB?\t1\n")
    assert read_examples(get_task("qqp"), qqp)[0].texts == ("A?", "B?")
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    stsb = write(tmp_path / "stsb.tsv", header + "0\tg\tf\t2012\t1\ts\ts\tA\tB\t3.800\n")
    assert read_examples(get_task("stsb"), stsb)[0].label == 3.8
    rte = write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\n9\tA.\tB.\n")
    ex = read_examples(get_task("rte"), rte)[0]
    assert (ex.guid, ex.label) == ("9", None)
