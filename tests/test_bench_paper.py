"""The paper's numbers as data: transcription cross-checks and setting matching."""
import json
import statistics

import pytest

from pini_core.bench import paper


def P():
    return paper.paper_results()


def test_table7_rows_average_to_table2_16_shot_row():
    t2, t7 = P()["table2"], P()["table7"]
    assert t7["datasets"] == t2["datasets"] and len(t7["datasets"]) == 11
    for m in ("linear_probe", "coop", "clip_adapter", "pini"):
        mean = statistics.fmean(t7["rows"][m][d] for d in t7["datasets"])
        assert round(mean, 2) == pytest.approx(t2["rows"]["16"][m], abs=0.006), m
    zs = statistics.fmean(t7["rows"]["zeroshot"][d] for d in t7["datasets"])
    assert round(zs, 2) == t2["zero_shot"] == 65.23


def test_table3_average_is_mean_of_source_and_targets():
    t3 = P()["table3"]
    for m, row in t3["rows"].items():
        cols = [t3["source"]] + t3["targets"]
        assert round(statistics.fmean(row[c] for c in cols), 2) == pytest.approx(row["average"], abs=0.006), m


def test_text_quotes_match_tables():
    t7 = P()["table7"]["rows"]
    # "The maximum performance improvement is 38.18% on EuroSAT" (Sec. 4.3)
    gains = {d: t7["pini"][d] - t7["zeroshot"][d] for d in t7["pini"]}
    assert max(gains, key=gains.get) == "eurosat"
    assert gains["eurosat"] == pytest.approx(38.18, abs=1e-6)
    # Sec. 4.3: PiNI is worse than the linear probe on FGVCAircraft only
    worse = [d for d in t7["pini"] if t7["pini"][d] < t7["linear_probe"][d]]
    assert worse == ["fgvc_aircraft"]
    # Table 3/4/7 share the ViT-B/16 ImageNet numbers
    t3, t4 = P()["table3"]["rows"], P()["table4"]["rows"]["imagenet"]
    for m in ("zeroshot", "coop", "pini"):
        assert t3[m]["imagenet"] == t7[m]["imagenet"] == t4[m]["ViT-B-16:openai"]


def test_table2_is_monotone_in_shots_for_pini_and_all_values_are_percentages():
    rows = P()["table2"]["rows"]
    pini = [rows[k]["pini"] for k in ("1", "2", "4", "8", "16")]
    assert pini == sorted(pini)
    flat = json.dumps(P())
    for t in ("table2", "table3", "table4", "table7"):
        assert t in flat


@pytest.mark.parametrize("name,canon", [("caltech-101", "caltech101"), ("food-101", "food101"),
                                        ("imagenet-adversarial", "imagenet_a"), ("ImageNet-Sketch", "imagenet_sketch"),
                                        ("oxford_pets", "oxford_pets"), ("toy-colourcast", None)])
def test_dataset_names_canonicalise(name, canon):
    assert paper.canonical_dataset(name) == canon


def test_lookups_only_match_the_same_setting():
    eleven = ["imagenet", "caltech-101", "oxford_pets", "stanford_cars", "oxford_flowers", "food-101",
              "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
    assert paper.table2_value("pini", 1, eleven, "ViT-B-16:openai") == 70.30
    assert paper.table2_value("zeroshot", 0, eleven, "ViT-B-16:openai") == 65.23
    assert paper.table2_value("pini", 1, eleven[:10], "ViT-B-16:openai") is None  # other dataset set
    assert paper.table2_value("pini", 1, eleven, "ViT-B-32:openai") is None  # other backbone
    assert paper.table2_value("tip_adapter", 1, eleven, "ViT-B-16:openai") is None  # not in the paper
    assert paper.table7_value("coop", "eurosat", 16, "ViT-B-16:openai") == 83.63
    assert paper.table7_value("coop", "eurosat", 8, "ViT-B-16:openai") is None
    assert paper.table7_value("zeroshot", "eurosat", 0, "ViT-B-16:openai") == 47.65
    assert paper.table3_value("pini", "imagenet", "imagenet-rendition", 16, "ViT-B-16:openai") == 74.39
    assert paper.table3_value("clip_adapter", "imagenet", "average", 16, "ViT-B-16:openai") == 60.84
    assert paper.table4_value("pini", "caltech-101", "RN50:openai", 16) == 93.02
    assert paper.table4_value("pini", "caltech-101", "RN50:openai", 4) is None
    assert paper.backbone_display("ViT-B-16:openai") == "ViT-B/16"
    assert paper.backbone_display("embedded") == "embedded"
