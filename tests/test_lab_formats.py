"""The lab sets as distributed (issue 38, item 1): KDEF, JAFFE, RaFD and Oulu-CASIA read from their
own file names and folders, on fixtures generated here in each set's exact layout: the label map
class by class, the subjects, the views, the per-class counts before and after mapping, and the
one table of formats that the command line and the README come from."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from msde_bench import CLASS_NAMES
from msde_bench.cli import main
from msde_bench.data import convert as C
from msde_bench.data.formats import FORMATS, markdown_table
from msde_bench.data.msde import read_msde
from msde_bench.data.synth import draw_pair
from msde_bench.errors import MsdeError

ROOT = Path(__file__).resolve().parents[1]
#: the expected MSD-E class of each source code or word
KDEF = {"AF": "Fear", "AN": "Anger", "DI": "Disgust", "HA": "Happiness", "NE": "Neutral", "SA": "Sadness",
        "SU": "Surprise"}
JAFFE = {"FE": "Fear", "AN": "Anger", "DI": "Disgust", "HA": "Happiness", "NE": "Neutral", "SA": "Sadness",
         "SU": "Surprise"}
RAFD = {"fearful": "Fear", "angry": "Anger", "disgusted": "Disgust", "happy": "Happiness", "neutral": "Neutral",
        "sad": "Sadness", "surprised": "Surprise"}
OULU = {"Anger": "Anger", "Disgust": "Disgust", "Fear": "Fear", "Happiness": "Happiness", "Sadness": "Sadness",
        "Surprise": "Surprise"}


def _face(i: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_pair(7, i, i % 7, 48)[0].save(path)


def _convert(fmt, src, out, **kw):
    report = C.convert(fmt, src, out, landmarks="off", **kw)
    meta = json.loads((out / "meta.json").read_text())
    ds = read_msde(out)
    return report, meta, ds


def _source_of(meta, pair_name):
    return Path(meta["pairs"][pair_name]["source"]).name


def _labels_by_source(meta, ds):
    """{source file name: MSD-E class name} of every converted pair."""
    return {_source_of(meta, p.name): CLASS_NAMES[p.label] for p in ds.pairs}


def test_the_one_table_names_every_reader_the_cli_and_the_readme():
    assert tuple(FORMATS) == tuple(C.READERS) == tuple(C.MAPPINGS)
    fmt_option = next(p for p in main.commands["data"].commands["convert"].params if p.name == "fmt")
    assert tuple(fmt_option.type.choices) == tuple(FORMATS)
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's format table is generated: paste data.formats.markdown_table()"


def test_kdef_as_distributed_flat_and_per_person_frontal_by_default(tmp_path):
    src = tmp_path / "KDEF"
    i = 0
    for session in "AB":
        for person in ("F01", "M02"):
            for code in KDEF:
                for view in ("S", "HL", "FR"):
                    name = f"{session}{person}{code}{view}.JPG"
                    # session A flat, session B in per-person folders (both layouts exist in the wild)
                    _face(i, src / name if session == "A" else src / f"{session}{person}" / name)
                    i += 1
    _face(0, src / "AF01AFS_copy" / "AF01AFS.JPG")  # a second file of the same take
    _face(1, src / "AF01XXS.JPG")  # an unknown expression code
    _face(2, src / "notes.jpg")  # not a KDEF name
    report, meta, ds = _convert("kdef", src, tmp_path / "out")
    labels = _labels_by_source(meta, ds)
    assert len(ds) == 2 * 2 * 7  # sessions x people x expressions, frontal only
    for name, cls in labels.items():
        assert name.upper()[5] == "S" or name.upper()[5:7] not in ("HL", "FR")
        assert cls == KDEF[name.upper()[4:6]], name
    assert {p.subject for p in ds.pairs} == {1, 2} and meta["subjects"]["ids"] == {"1": "F01", "2": "M02"}
    assert report.dropped["view HL"] == report.dropped["view FR"] == 28
    assert meta["views"] == ["S"]
    assert meta["counts"]["classes"] == {c: 4 for c in KDEF.values()}
    assert meta["counts"]["source_classes"] == {c: 4 for c in KDEF}
    skipped = "\n".join(report.skipped)
    assert "AF01AFS.JPG: the same person, expression and take as" in skipped
    assert "AF01XXS.JPG: unknown KDEF expression code 'XX'" in skipped and "notes.jpg: not a KDEF name" in skipped
    _, meta2, ds2 = _convert("kdef", src, tmp_path / "out2", views="S,HL")
    assert len(ds2) == 56 and meta2["views"] == ["S", "HL"]
    with pytest.raises(MsdeError, match="--views S,XL: kdef knows the views S, HL, HR, FL, FR"):
        C.convert("kdef", src, tmp_path / "out3", landmarks="off", views="S,XL")


def test_jaffe_as_distributed(tmp_path):
    src = tmp_path / "jaffe"
    n = 0
    for person in ("KA", "NA", "YM"):
        for code in JAFFE:
            for take in (1, 2):
                n += 1
                _face(n, src / f"{person}.{code}{take}.{n}.tiff")
    _face(0, src / "KA.AN1.999.tiff")  # the same person, expression and take as KA.AN1.<n>
    _face(0, src / "KA.XX1.998.tiff")
    report, meta, ds = _convert("jaffe", src, tmp_path / "out")
    assert len(ds) == 3 * 7 * 2
    for name, cls in _labels_by_source(meta, ds).items():
        assert cls == JAFFE[name.split(".")[1][:2]], name
    assert sorted(meta["subjects"]["ids"].values()) == ["KA", "NA", "YM"]
    assert Counter(p.subject for p in ds.pairs) == Counter({0: 14, 1: 14, 2: 14})
    assert meta["counts"]["classes"] == {c: 6 for c in JAFFE.values()}
    assert any("KA.AN1.999.tiff: the same person, expression and take" in s for s in report.skipped)
    assert any("KA.XX1.998.tiff: unknown JAFFE expression code 'XX'" in s for s in report.skipped)


def test_rafd_as_distributed_frontal_camera_and_contempt_dropped_unless_mapped(tmp_path):
    src = tmp_path / "RaFD"
    i = 0
    for subject in ("01", "02"):
        for word in (*RAFD, "contemptuous"):
            for angle in ("090", "045", "180"):
                for gaze in ("frontal", "left"):
                    i += 1
                    _face(i, src / f"Rafd{angle}_{subject}_Caucasian_female_{word}_{gaze}.jpg")
    _face(0, src / "Rafd090_03_Caucasian_male_bored_frontal.jpg")
    report, meta, ds = _convert("rafd", src, tmp_path / "out")
    assert len(ds) == 2 * 7 * 2  # people x the seven expressions x gazes, camera 090
    for name, cls in _labels_by_source(meta, ds).items():
        assert name.startswith("Rafd090_") and cls == RAFD[name.split("_")[4]], name
    assert report.dropped["contemptuous"] == 4 and report.dropped["view 045"] == report.dropped["view 180"] == 32
    assert meta["counts"]["source_classes"]["contemptuous"] == 4
    assert {p.subject for p in ds.pairs} == {1, 2}
    assert any("bored_frontal.jpg: unknown RaFD expression 'bored'" in s for s in report.skipped)
    _, meta2, ds2 = _convert("rafd", src, tmp_path / "out2", class_map={"contemptuous": "disgust"}, views="090,045")
    assert len(ds2) == 2 * 8 * 2 * 2
    assert meta2["counts"]["classes"]["Disgust"] == 16


def test_oulu_as_distributed_the_last_three_frames_of_the_visible_strong_sequences(tmp_path):
    src = tmp_path / "Oulu-CASIA"
    i = 0
    for camera in ("VL", "NI"):
        for subject in ("P001", "P002"):
            for emotion in OULU:
                for frame in range(5 if subject == "P001" else 2):
                    i += 1
                    _face(i, src / camera / "Strong" / subject / emotion / f"{frame:03d}.jpeg")
    _face(0, src / "VL" / "Strong" / "Q9" / "Anger" / "000.jpeg")
    report, meta, ds = _convert("oulu", src, tmp_path / "out")
    names = [meta["pairs"][p.name]["source"] for p in ds.pairs]
    assert len(ds) == 6 * 3 + 6 * 2  # P001: the last 3 of 5 frames; P002: both of its 2
    assert all(n.startswith("VL/Strong/") for n in names)
    assert all(Path(n).name in ("002.jpeg", "003.jpeg", "004.jpeg") for n in names if "/P001/" in n)
    for p in ds.pairs:
        assert CLASS_NAMES[p.label] == OULU[meta["pairs"][p.name]["source"].split("/")[3]]
    assert meta["subjects"]["ids"] == {"1": "P001", "2": "P002"} and meta["subjects"]["sequences"] == 12
    assert report.dropped["view NI/Strong"] == 30  # the images it would have given
    assert any("Q9" in s and "not an Oulu-CASIA person folder" in s for s in report.skipped)
    # SRC may be one camera/lighting folder
    _, meta2, ds2 = _convert("oulu", src / "VL" / "Strong", tmp_path / "out2")
    assert len(ds2) == 30


def test_every_format_records_and_prints_its_class_counts_before_and_after_mapping(tmp_path):
    src = tmp_path / "folder"
    for i, cls in enumerate(("happy", "happy", "angry", "contempt")):
        _face(i, src / cls / f"{i}.png")
    res = CliRunner().invoke(main, ["data", "convert", "--format", "imagefolder", str(src), str(tmp_path / "out"),
                                    "--landmarks", "off"])
    assert res.exit_code == 0, res.output
    assert "classes before mapping: angry 1, contempt 1, happy 2" in res.output
    assert "classes after mapping: Happiness 2, Anger 1" in res.output
    counts = json.loads((tmp_path / "out" / "meta.json").read_text())["counts"]
    assert counts["source_classes"] == {"angry": 1, "contempt": 1, "happy": 2}
    assert counts["classes"] == {"Happiness": 2, "Anger": 1}


@pytest.mark.parametrize("args,message", [
    (["--format", "jaffe", "--views", "S"], "--views: only with --format kdef, rafd, oulu"),
    (["--format", "kdef", "--map", "af=drop"], "--map: only with --format imagefolder, ckplus, rafd, oulu"),
    (["--format", "kdef", "--subject-pattern", "(?P<subject>x)"], "--subject-pattern: only with --format imagefolder"),
])
def test_options_a_format_does_not_take_are_refused_in_one_line(tmp_path, args, message):
    _face(0, tmp_path / "src" / "AF01AFS.JPG")
    res = CliRunner().invoke(main, ["data", "convert", str(tmp_path / "src"), str(tmp_path / "out"),
                                    "--landmarks", "off", *args])
    assert res.exit_code == 2 and re.search(re.escape(message), res.output), res.output
    assert not (tmp_path / "out").exists()
