"""Public FER datasets -> MSD-E layout: every format, masks, bad input, resume, holdout."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from msde_bench.cli import main
from msde_bench.data.convert import convert
from msde_bench.data.masking import TemplateMasker
from msde_bench.data.msde import read_msde
from msde_bench.data.synth import draw_pair
from msde_bench.errors import DataError, MsdeError


def _face(i: int, size: int = 48) -> Image.Image:
    return draw_pair(7, i, i % 7, size)[0]


def _rafdb(root, n=6):
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for i in range(n):
        split = "train" if i < n - 2 else "test"
        name = f"{split}_{i:05d}"
        _face(i).save(root / "Image" / "aligned" / f"{name}_aligned.jpg")
        lines.append(f"{name}.jpg {i % 7 + 1}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def _fer2013(root, rows):
    root.mkdir(parents=True, exist_ok=True)
    with (root / "fer2013.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for r in rows:
            w.writerow(r)
    return root


def _pixels(i, n=2304):
    return " ".join(str(v) for v in (np.asarray(_face(i).convert("L")).flatten()[:n] if n <= 2304 else range(n)))


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_rafdb(tmp_path):
    src = _rafdb(tmp_path / "raf")
    report = convert("rafdb", src, tmp_path / "out")
    assert report.written == 6 and report.skipped == []
    ds = read_msde(tmp_path / "out")
    assert [p.label for p in ds.pairs] == [0, 1, 2, 3, 4, 5]  # RAF-DB 1-7 -> MSD-E 0-6
    assert ds.official_splits() == ["train"] * 4 + ["test"] * 2
    assert len(set(ds.subjects.tolist())) == 6  # one subject per image
    first = ds.pairs[0]
    # the non-masked image is the original file, byte for byte
    assert first.non_masked.read_bytes() == (src / "Image" / "aligned" / "train_00000_aligned.jpg").read_bytes()
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["source_format"] == "rafdb" and meta["label_mapping"]["1"] == "Surprise"
    placements = {k: v for k, v in meta["counts"]["masks"].items() if k.startswith("placement:")}
    assert sum(placements.values()) == 6 and set(placements) <= {"placement:template", "placement:landmarks"}


def test_fer2013_labels_splits_and_bad_rows(tmp_path):
    rows = [[0, _pixels(0), "Training"], [3, _pixels(1), "PublicTest"], [6, _pixels(2), "PrivateTest"],
            [1, _pixels(3, 2303), "Training"], [9, _pixels(4), "Training"], [5, _pixels(5), "Training"]]
    src = _fer2013(tmp_path / "fer", rows)
    report = convert("fer2013", src, tmp_path / "out")
    ds = read_msde(tmp_path / "out")
    assert sorted((p.name.split("_", 2)[2], p.label) for p in ds.pairs) == [
        ("fer00000.png", 5), ("fer00001.png", 3), ("fer00002.png", 6), ("fer00005.png", 0)]
    # PublicTest is the validation split, kept apart from PrivateTest (the test split), never merged
    assert sorted(ds.official_splits()) == ["test", "train", "train", "val"]
    assert any("fer2013.csv:5: 2303 pixels, expected 2304" in s for s in report.skipped)
    assert any("fer2013.csv:6: emotion 9 outside 0-6" in s for s in report.skipped)
    assert (tmp_path / "out" / "skipped.txt").read_text().count("\n") == 2
    with Image.open(ds.pairs[0].non_masked) as im:
        assert im.size == (48, 48)


def test_ferplus_majority_labels(tmp_path):
    src = _fer2013(tmp_path / "fer", [[0, _pixels(0), "Training"], [0, _pixels(1), "Training"]])
    with (src / "fer2013new.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                    "contempt", "unknown", "NF"])
        w.writerow(["Training", "fer0000000.png", 0, 8, 1, 0, 1, 0, 0, 0, 0, 0])  # happiness
        w.writerow(["Training", "fer0000001.png", 0, 0, 0, 0, 1, 0, 0, 9, 0, 0])  # contempt: dropped
    report = convert("fer2013", src, tmp_path / "out")
    ds = read_msde(tmp_path / "out")
    assert [p.label for p in ds.pairs] == [3] and report.dropped == {"contempt": 1}


def test_affectnet_crops_the_face_box_and_drops_contempt(tmp_path):
    src = tmp_path / "affectnet"
    (src / "Manually_Annotated_Images" / "1").mkdir(parents=True)
    big = Image.new("RGB", (120, 100), (0, 0, 0))
    big.paste(_face(0, 64), (30, 20))
    big.save(src / "Manually_Annotated_Images" / "1" / "a.jpg")
    big.save(src / "Manually_Annotated_Images" / "1" / "b.jpg")
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    (src / "training.csv").write_text(header + "1/a.jpg,30,20,64,64,,1,0.5,0.5\n1/b.jpg,30,20,64,64,,7,0,0\n")
    (src / "validation.csv").write_text(header + "1/b.jpg,30,20,64,64,,6,0,0\n1/missing.jpg,0,0,10,10,,0,0,0\n")
    report = convert("affectnet", src, tmp_path / "out")
    ds = read_msde(tmp_path / "out")
    assert [(p.label, s) for p, s in zip(ds.pairs, ds.official_splits())] == [(3, "train"), (5, "test")]
    assert report.dropped == {"contempt": 1}
    assert any("missing.jpg not found" in s for s in report.skipped)
    with Image.open(ds.pairs[0].non_masked) as im:
        assert im.size == (64, 64)


def test_imagefolder_synonyms_and_splits(tmp_path):
    src = tmp_path / "folder"
    for split, cls, i in (("train", "Happy", 0), ("train", "ANGRY", 1), ("test", "happiness", 2), ("test", "bored", 3)):
        (src / split / cls).mkdir(parents=True, exist_ok=True)
        _face(i).save(src / split / cls / f"img{i}.png")
    report = convert("imagefolder", src, tmp_path / "out")
    ds = read_msde(tmp_path / "out")
    assert sorted((p.label, s) for p, s in zip(ds.pairs, ds.official_splits())) == [(3, "test"), (3, "train"),
                                                                                     (5, "train")]
    # a class outside the seven is dropped and counted, not a skipped item (issue 24)
    assert report.dropped == {"bored": 1} and not report.skipped
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["subjects"]["how"].startswith("none: one subject")


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _ckplus(root, subjects=(10, 11, 52), sequences=(1, 4), bad=()):
    """A small CK+-named fixture: each sequence's last three frames, a contempt folder, drawn faces."""
    classes = ["anger", "happy", "surprise", "contempt"]
    i = 0
    for s in subjects:
        for q in sequences:
            cls = classes[i % len(classes)]
            (root / cls).mkdir(parents=True, exist_ok=True)
            for frame in (17, 18, 19):
                _face(i).convert("L").save(root / cls / f"S{s:03d}_{q:03d}_{frame:08d}.png")
            i += 1
    for name in bad:
        (root / "anger").mkdir(parents=True, exist_ok=True)
        _face(99).convert("L").save(root / "anger" / name)
    return root


def test_ckplus_subjects_and_sequences_come_from_the_file_names(tmp_path):
    src = _ckplus(tmp_path / "ck")
    res = CliRunner().invoke(main, ["data", "convert", "--format", "ckplus", str(src), str(tmp_path / "out"),
                                    "--landmarks", "off"])
    assert res.exit_code == 0, res.output  # contempt is dropped and counted: not a failure
    assert "dropped (outside the seven classes, or --map NAME=drop): contempt 3" in res.output
    ds = read_msde(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert sorted(set(ds.subjects.tolist())) == [10, 11, 52] and len(ds) == 15
    for p in ds.pairs:  # every pair's subject is its CK+ S###, its source file and sequence recorded
        info = meta["pairs"][p.name]
        assert info["subject"] == f"S{p.subject:03d}" and Path(info["source"]).name.startswith(info["subject"])
        assert info["sequence"].startswith(info["subject"] + "/")
    assert meta["subjects"]["sequences"] == 5 and meta["subjects"]["ids"]["52"] == "S052"
    assert "file names (CK+" in meta["subjects"]["how"]
    stats = CliRunner().invoke(main, ["data", "stats", str(tmp_path / "out")])
    assert "| subjects from" in stats.output and "file names (CK+" in stats.output
    assert "| masks placed by" in stats.output and "template 15" in stats.output and "| mask drawing" in stats.output
    assert "3 subjects (from file names (CK+" in CliRunner().invoke(main, ["data", "validate", str(tmp_path / "out")]).output
    # grayscale faces get grayscale masks, in their partner's mode and size: the views differ only by the mask
    for p in ds.pairs:
        with Image.open(p.non_masked) as a, Image.open(p.masked) as b:
            assert a.mode == b.mode == "L" and a.size == b.size
    # contempt mapped onto a class: its subject comes in
    mapped = convert("ckplus", src, tmp_path / "mapped", landmarks="off", class_map={"contempt": "disgust"})
    assert not mapped.dropped and len(read_msde(tmp_path / "mapped")) == 18


def test_colour_masks_only_on_colour_faces(tmp_path):
    src = tmp_path / "folder"
    (src / "happy").mkdir(parents=True)
    _face(0).save(src / "happy" / "colour.png")  # a colour face
    _face(1).convert("L").convert("RGB").save(src / "happy" / "grey-as-rgb.png")  # grey pixels in an RGB file
    convert("imagefolder", src, tmp_path / "out", landmarks="off", mask_style="cloth", seed=3)
    for p in read_msde(tmp_path / "out").pairs:
        with Image.open(p.masked) as m:
            a = np.asarray(m.convert("RGB")).astype(int)
            grey = np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
            assert m.mode == "RGB" and grey == ("grey-as-rgb" in p.name), p.name


def test_a_name_the_subject_pattern_does_not_match_is_skipped_with_its_path(tmp_path):
    src = _ckplus(tmp_path / "ck", subjects=(10,), sequences=(1,), bad=("face_0001.png",))
    res = CliRunner().invoke(main, ["data", "convert", "--format", "ckplus", str(src), str(tmp_path / "out"),
                                    "--landmarks", "off"])
    assert res.exit_code == 1 and f"{src / 'anger' / 'face_0001.png'}: the subject pattern" in res.output
    assert len(read_msde(tmp_path / "out")) == 3


def test_imagefolder_subject_pattern_for_names_without_digits(tmp_path):
    """JAFFE-style names (KA.AN1.39): ids without digits are numbered in sorted order."""
    src = tmp_path / "jaffe"
    for i, (who, cls) in enumerate([("KA", "angry"), ("KA", "happy"), ("YM", "happy"), ("NA", "sad")]):
        (src / cls).mkdir(parents=True, exist_ok=True)
        _face(i).save(src / cls / f"{who}.{cls[:2].upper()}{i}.{30 + i}.png")
    pattern = r"/(?P<subject>[A-Z]{2})\.[A-Z]{2}\d"
    res = CliRunner().invoke(main, ["data", "convert", "--format", "imagefolder", str(src), str(tmp_path / "out"),
                                    "--landmarks", "off", "--subject-pattern", pattern])
    assert res.exit_code == 0, res.output
    ds = read_msde(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["subjects"]["ids"] == {"0": "KA", "1": "NA", "2": "YM"}
    assert sorted(ds.subjects.tolist()) == [0, 0, 1, 2] and meta["subjects"]["how"] == f"--subject-pattern {pattern}"


@pytest.mark.parametrize("args,message", [
    (["--format", "imagefolder", "--subject-pattern", "(?P<who>.)"], "needs a named group (?P<subject>...)"),
    (["--format", "imagefolder", "--subject-pattern", "(?P<subject>"], "not a regular expression"),
    (["--format", "rafdb", "--subject-pattern", "(?P<subject>.)"], "only with --format imagefolder"),
    (["--format", "ckplus", "--map", "contempt"], "expected NAME=CLASS or NAME=drop"),
    (["--format", "ckplus", "--map", "contempt=bored"], "'bored' is not one of the seven classes"),
    (["--format", "rafdb", "--map", "contempt=drop"], "--map: only with --format imagefolder, ckplus, rafd, oulu"),
])
def test_identity_and_class_options_are_checked(tmp_path, args, message):
    src = _ckplus(tmp_path / "ck", subjects=(10,), sequences=(1,))
    res = CliRunner().invoke(main, ["data", "convert", *args, str(src), str(tmp_path / "out")])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (SHARED_DATA / "ckplus48").is_dir(), reason="../shared/data/ckplus48 (real CK+) is not here")
def test_real_ckplus_keeps_its_106_subjects(tmp_path):
    report = convert("ckplus", SHARED_DATA / "ckplus48", tmp_path / "out", landmarks="off")
    assert report.dropped == {"contempt": 54} and not report.skipped
    ds = read_msde(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert len(ds) == 927 and len(set(ds.subjects.tolist())) == 106
    assert all(meta["pairs"][p.name]["subject"] == f"S{p.subject:03d}" for p in ds.pairs)
    for p in ds.pairs:  # CK+ is grayscale: no coloured mask on any face
        with Image.open(p.masked) as m:
            assert m.mode == "L"


def test_template_mask_covers_mouth_and_nose_and_leaves_the_eyes():
    """The fallback placement."""
    # on an aligned face (the synthetic faces share the canonical proportions closely enough)
    masker = TemplateMasker(seed=0)
    for i in range(10):
        face = _face(i, 100)
        masked, info = masker(face, f"k{i}")
        a = np.asarray(face, dtype=float)
        b = np.asarray(masked, dtype=float)
        diff = np.abs(a - b).sum(axis=2)
        assert (diff[:38] == 0).mean() > 0.97  # eyes and above untouched
        assert (diff[62:84, 30:70] > 10).mean() > 0.8  # mouth region covered
        assert info["placement"] == "template"


def _changed(face, masked) -> np.ndarray:
    return np.abs(np.asarray(face, dtype=float) - np.asarray(masked, dtype=float)).sum(axis=2) > 0


def test_the_mask_follows_the_face_not_a_flat_polygon():
    """Issue 24: the top edge rises over the nose bridge (higher in the middle than under the eyes),
    and the mask takes the face's light: a darker photograph gets a darker mask."""
    masker = TemplateMasker(seed=0, style="surgical")
    for i in range(6):
        face = _face(i, 100)
        masked, _ = masker(face, f"k{i}")
        changed = _changed(face, masked)
        top = [int(np.argmax(changed[:, x])) for x in (32, 50, 68)]  # under the left eye, the nose, the right eye
        assert top[1] < top[0] - 2 and top[1] < top[2] - 2, top
    # the light: the same mask on a bright and on a dark photograph (plain grey, the template's placement)
    bright, dark = (Image.new("RGB", (100, 100), (v, v, v)) for v in (180, 90))
    (on_bright, _), (on_dark, _) = masker(bright, "k"), masker(dark, "k")
    inside = _changed(bright, on_bright) & _changed(dark, on_dark)
    assert np.asarray(on_dark, dtype=float)[inside].mean() < 0.7 * np.asarray(on_bright, dtype=float)[inside].mean()


def test_the_mask_shows_nothing_of_what_it_covers():
    """The mask's light comes from the skin it leaves visible: whatever the mouth does under it, the
    masked image is the same (a mask must not show the expression through it)."""
    masker = TemplateMasker(seed=1)
    face = _face(3, 100)
    other = np.array(face)
    other[68:82, 38:62] = 0  # a wide-open dark mouth
    a, _ = masker(face, "k")
    b, _ = masker(Image.fromarray(other), "k")
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_the_synthetic_faces_landmarks_place_the_fitted_mask_where_their_own_mask_is():
    """draw_pair returns its face's 68 points (the README's before/after figure draws from them): the
    fitted mask covers most of what the synthetic set's own mask covers and leaves the eyes."""
    from msde_bench.data.face_masks import draw_fitted_mask

    for subject in range(5):
        face, own, info = draw_pair(0, subject, subject % 7, 96)
        fitted, _ = draw_fitted_mask(np.asarray(face), info["landmarks"], np.random.default_rng(subject))
        old, new = _changed(face, own), _changed(face, fitted)
        assert (old & new).sum() > 0.7 * old.sum()
        eyes = info["landmarks"][36:48].round().astype(int)
        assert not new[eyes[:, 1], eyes[:, 0]].any()


def test_same_seed_same_output_and_style(tmp_path):
    src = _rafdb(tmp_path / "raf", 4)
    convert("rafdb", src, tmp_path / "a", seed=3)
    convert("rafdb", src, tmp_path / "b", seed=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    convert("rafdb", src, tmp_path / "c", seed=4)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    report = convert("rafdb", src, tmp_path / "d", mask_style="n95")
    assert report.masks["n95"] == 4


def test_resume_keeps_written_pairs_and_redoes_broken_ones(tmp_path):
    src = _rafdb(tmp_path / "raf", 5)
    out = tmp_path / "out"
    convert("rafdb", src, out)
    first = (_digest(out / "MSD-E"), _digest(out / "MSD-ME"), (out / "Paired_files.txt").read_text())
    victim = sorted((out / "MSD-ME").iterdir())[1]
    victim.write_bytes(b"half-written")
    report = convert("rafdb", src, out)
    assert report.kept == 4 and report.written == 1
    assert (_digest(out / "MSD-E"), _digest(out / "MSD-ME"), (out / "Paired_files.txt").read_text()) == first


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match="list_patition_label.txt: label file not found"):
        convert("rafdb", tmp_path, tmp_path / "o1")
    src = _rafdb(tmp_path / "raf", 3)
    lst = src / "EmoLabel" / "list_patition_label.txt"
    lst.write_text(lst.read_text() + "train_09999.jpg 3\ntrain_00000.jpg 9\n")
    (src / "Image" / "aligned" / "test_00001_aligned.jpg").write_bytes(b"not a jpeg")
    runner = CliRunner()
    res = runner.invoke(main, ["data", "convert", "--format", "rafdb", str(src), str(tmp_path / "o2")])
    assert res.exit_code == 1
    assert f"{lst}:4: image" in res.output and "not found" in res.output
    assert f"{lst}:5: label 9 outside 1-7" in res.output
    assert f"{lst}:2: not a readable image" in res.output
    ok = runner.invoke(main, ["data", "convert", "--format", "rafdb", str(src), str(tmp_path / "o3"), "--allow-skips"])
    assert ok.exit_code == 0 and "skipped 3 items" in ok.output
    missing = runner.invoke(main, ["data", "convert", "--format", "fer2013", str(tmp_path / "nothing"), str(tmp_path / "o4")])
    assert missing.exit_code == 2 and "source not found" in missing.output


def test_holdout_protocol_runs_on_a_converted_set(tmp_path):
    src = _rafdb(tmp_path / "raf", 14)
    convert("rafdb", src, tmp_path / "out")
    res = CliRunner().invoke(main, ["run", "--data", str(tmp_path / "out"), "--recipe", "quick", "--epochs", "1",
                                    "--image-size", "32", "--device", "cpu", "--out", str(tmp_path / "r"),
                                    "--no-progress", "--no-save-models"])
    assert res.exit_code == 0, res.output
    result = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert result["protocol"]["split"] == "holdout" and result["protocol"]["folds"] == 1
    assert result["folds"][0]["n_test_pairs"] == 2 and result["folds"][0]["n_train_pairs"] == 12
    # compare defaults to the same protocol, and its baseline row is the run above (one shared result file)
    res = CliRunner().invoke(main, ["compare", "--data", str(tmp_path / "out"), "--recipe", "quick", "--epochs", "1",
                                    "--image-size", "32", "--device", "cpu", "--out", str(tmp_path / "r"),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "protocol holdout (1 folds)" in " ".join(res.output.split())  # rich wraps the header line
    rows = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("*.json")]
    assert len(rows) == 5 and {r["protocol"]["split"] for r in rows} == {"holdout"}


def test_a_set_without_a_test_split_defaults_to_clean_folds_and_folds_are_never_dropped(tmp_path):
    """Issue 24: a class-folder set marks every pair "train"; `run` then uses subject-disjoint folds
    (not a holdout that fails), the holdout error names --protocol clean, and --folds under holdout is
    refused rather than silently turned into one fold."""
    from msde_bench.api import prepare_spec
    from msde_bench.runner import cells_of

    convert("ckplus", _ckplus(tmp_path / "ck", subjects=(10, 11, 12, 13)), tmp_path / "ck-out", landmarks="off")
    spec, _ = prepare_spec("resnet18", "baseline", data=str(tmp_path / "ck-out"), recipe="quick", device="cpu",
                           folds=2)
    assert spec.protocol == "clean" and spec.folds == 2
    holdout, ds = prepare_spec("resnet18", "baseline", data=str(tmp_path / "ck-out"), recipe="quick", device="cpu",
                               protocol="holdout")
    with pytest.raises(MsdeError, match="the official split has 18 train and 0 test pairs; use --protocol clean"):
        cells_of(holdout, ds)
    convert("rafdb", _rafdb(tmp_path / "raf", 14), tmp_path / "raf-out")
    res = CliRunner().invoke(main, ["run", "--data", str(tmp_path / "raf-out"), "--folds", "5", "--device", "cpu",
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--folds 5: the holdout protocol has one fold" in res.output
    assert "use --protocol clean for 5 subject-disjoint folds" in res.output and not (tmp_path / "r").exists()


def test_a_set_without_identities_runs_image_level_folds_and_says_so(tmp_path):
    """Issue 24: without subject identities the folds cannot keep a person on one side; the run warns
    (naming --subject-pattern), the result records protocol.folds_by = image, the leaderboard's table
    says so. With CK+'s identities the folds are by subject and never split a person or a sequence."""
    from msde_bench.protocol import make_folds

    src = _ckplus(tmp_path / "ck", subjects=(10, 11, 12, 13))
    convert("imagefolder", src, tmp_path / "flat", landmarks="off")
    convert("ckplus", src, tmp_path / "ids", landmarks="off")
    flat, ids = read_msde(tmp_path / "flat"), read_msde(tmp_path / "ids")
    assert (flat.fold_grouping(), ids.fold_grouping()) == ("image", "subject")
    meta = json.loads((tmp_path / "ids" / "meta.json").read_text())
    for fold in make_folds("clean", ids.subjects, ids.labels, 2, 0):
        seq = [meta["pairs"][ids.pairs[i].name]["sequence"] for i in range(len(ids))]
        train, test = {seq[i] for i in fold.train}, {seq[i] for i in fold.test}
        assert not train & test and not set(ids.subjects[fold.train]) & set(ids.subjects[fold.test])
    args = ["run", "--protocol", "clean", "--folds", "2", "--fold", "0", "--epochs", "1", "--image-size", "32",
            "--batch-size", "8", "--device", "cpu", "--no-progress", "--no-save-models"]
    res = CliRunner().invoke(main, [*args, "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "has no subject identities" in text and "image-level, not subject-disjoint" in text
    assert "--subject-pattern REGEX" in text
    result = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert result["protocol"]["folds_by"] == "image" and result["dataset"]["folds_by"] == "image"
    board = CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path / "r"), "--output",
                                      str(tmp_path / "LB.md")])
    assert board.exit_code == 0, board.output
    assert "**Image-level folds:**" in (tmp_path / "LB.md").read_text()
    res = CliRunner().invoke(main, [*args, "--data", str(tmp_path / "ids"), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0 and "no subject identities" not in res.output
    assert json.loads(next((tmp_path / "r2").glob("*.json")).read_text())["protocol"]["folds_by"] == "subject"


def test_a_validation_split_is_kept_and_scored_beside_the_test_split(tmp_path):
    """Issue 24: imagefolder reads train/, validation/ (or val/) and test/; under holdout the model trains
    on train only, the reported numbers are the test split's, and the validation split's stand beside."""
    src = tmp_path / "folder"
    n = {"train": 12, "validation": 4, "test": 6}
    for split, count in n.items():
        for i in range(count):
            cls = ("happy", "angry", "sad")[i % 3]
            (src / split / cls).mkdir(parents=True, exist_ok=True)
            _face(i + 100 * len(split)).save(src / split / cls / f"{split}{i}.png")
    convert("imagefolder", src, tmp_path / "out", landmarks="off")
    ds = read_msde(tmp_path / "out")
    assert sorted(set(ds.official_splits())) == ["test", "train", "val"]
    assert {k: ds.official_splits().count(v) for k, v in (("train", "train"), ("validation", "val"), ("test", "test"))} == n
    res = CliRunner().invoke(main, ["run", "--data", str(tmp_path / "out"), "--recipe", "quick", "--epochs", "1",
                                    "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--out",
                                    str(tmp_path / "r"), "--no-progress", "--no-save-models", "--tta", "flip"])
    assert res.exit_code == 0, res.output
    fold = json.loads(next((tmp_path / "r").glob("*.json")).read_text())["folds"][0]
    assert fold["n_train_pairs"] == 12 and fold["n_test_pairs"] == 6
    assert fold["val"]["n_pairs"] == 4 and 0 <= fold["val"]["acc_masked"] <= 1
    # --tta: the test split's and the validation split's, each beside its own plain numbers
    assert set(fold["tta"]) == set(fold["val"]["tta"]) == {"flip"}


def _astronaut_crop():
    """A real photograph with a known face (scikit-image's astronaut, public domain), cropped like an
    aligned dataset crop."""
    dlib = pytest.importorskip("dlib")
    from skimage import data

    img = data.astronaut()
    f = dlib.get_frontal_face_detector()(img, 1)[0]
    return Image.fromarray(img).crop((f.left() - 15, f.top() - 25, f.right() + 15, f.bottom() + 20)).resize((100, 100))


@pytest.mark.parametrize("tilt", [0, 15])
def test_landmark_mask_on_a_real_face(tilt):
    from msde_bench.data.masking import LandmarkMasker, make_masker

    masker = make_masker(0, landmarks="on")
    assert isinstance(masker, LandmarkMasker)
    face = _astronaut_crop().rotate(tilt, resample=Image.BICUBIC)
    pts = masker.landmarks(np.asarray(face))
    assert pts is not None
    masked, info = masker(face, "astronaut")
    assert info["placement"] == "landmarks" and abs(info["roll"] + tilt) < 6
    diff = np.abs(np.asarray(face, dtype=float) - np.asarray(masked, dtype=float)).sum(axis=2)

    def changed(points):
        return np.mean([diff[int(y), int(x)] > 20 for x, y in points])

    assert changed(pts[48:68]) == 1.0  # mouth
    assert changed(pts[31:36]) == 1.0  # nostrils and nose tip
    assert changed(pts[36:48]) == 0.0  # eyes
    x0, y0 = pts[17:27].min(axis=0).astype(int)  # brows
    assert diff[: max(0, y0 - 1)].max() == 0  # nothing above the brows changes


def test_landmarks_fall_back_to_the_template_when_implausible(monkeypatch, tmp_path):
    from msde_bench.data import masking

    masker = masking.make_masker(0, landmarks="on")
    face = _face(0, 100)
    monkeypatch.setattr(masking.LandmarkMasker, "landmarks", lambda self, arr: None)
    masked, info = masker(face, "k")
    assert info["placement"] == "template"
    assert masking.make_masker(0, landmarks="off").name == "template"
    src = _rafdb(tmp_path / "raf", 3)
    report = convert("rafdb", src, tmp_path / "out", landmarks="on")
    assert report.masks["placement:template"] == 3  # counted and reported


def test_fer2013_pixel_values_outside_a_byte_are_a_skipped_row(tmp_path):
    bad = " ".join(["300"] + _pixels(1).split()[1:])
    negative = " ".join(["-1"] + _pixels(2).split()[1:])
    src = _fer2013(tmp_path / "fer", [[0, _pixels(0), "Training"], [3, bad, "Training"], [4, negative, "Training"]])
    res = CliRunner().invoke(main, ["data", "convert", "--format", "fer2013", str(src), str(tmp_path / "out")])
    assert res.exit_code == 1 and "Traceback" not in res.output  # skipped items: exit 1 unless --allow-skips
    skipped = (tmp_path / "out" / "skipped.txt").read_text()
    assert "fer2013.csv:3: pixel values 0-300, expected 0-255" in skipped
    assert "fer2013.csv:4: pixel values -1-" in skipped
    assert len(read_msde(tmp_path / "out").pairs) == 1


def test_an_interrupted_conversion_never_validates_and_a_rerun_completes_it(tmp_path, monkeypatch):
    from msde_bench.data import convert as C

    src = _rafdb(tmp_path / "raf")
    calls = {"n": 0}
    real = C._save_atomic

    def crash_on_third(img, path):
        calls["n"] += 1
        if calls["n"] == 5:  # the fifth pair's masked image (rafdb copies the non-masked file)
            raise KeyboardInterrupt
        real(img, path)

    monkeypatch.setattr(C, "_save_atomic", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        convert("rafdb", src, tmp_path / "out")
    res = CliRunner().invoke(main, ["data", "validate", str(tmp_path / "out")])
    assert res.exit_code == 2 and "did not finish; run it again" in res.output
    monkeypatch.setattr(C, "_save_atomic", real)
    report = convert("rafdb", src, tmp_path / "out")
    assert report.kept == 4 and report.written == 2
    assert CliRunner().invoke(main, ["data", "validate", str(tmp_path / "out")]).exit_code == 0


def test_the_readme_mask_figure_is_what_the_script_draws():
    """docs/masks-before-after.png (the README's figure) is scripts/mask_figure.py's drawing of the
    current masks: drawing them otherwise means regenerating it. Compared by pixels, within what
    another Pillow's resampling may change."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("mask_figure", root / "scripts" / "mask_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    drawn = np.asarray(module.draw(), dtype=float)
    with Image.open(root / "docs" / "masks-before-after.png") as im:
        committed = np.asarray(im.convert("RGB"), dtype=float)
    assert drawn.shape == committed.shape
    assert np.abs(drawn - committed).mean() < 1.0


def test_conversions_under_other_mask_styles_keep_the_same_pairs_subjects_and_faces(tmp_path):
    """Issue 38's mask-style shift is a paired comparison: every style's conversion of one source has
    the same pairs, subjects, labels and non-masked faces, and only the masks differ."""
    src = _ckplus(tmp_path / "ck")
    sets = {}
    for style in ("surgical", "cloth", "n95", "random"):
        convert("ckplus", src, tmp_path / style, mask_style=style, landmarks="off")
        sets[style] = read_msde(tmp_path / style)
    ref = sets["surgical"]
    for ds in sets.values():
        assert [(p.name, p.subject, p.label) for p in ds.pairs] == [(p.name, p.subject, p.label) for p in ref.pairs]
        assert ds.face_digests() == ref.face_digests()
    masked = {style: [p.masked.read_bytes() for p in ds.pairs] for style, ds in sets.items()}
    assert masked["surgical"] != masked["cloth"] != masked["n95"]


def test_a_huge_image_is_skipped_by_its_header_never_decoded(tmp_path, monkeypatch):
    """Issue 40 (9): a 10,000 x 10,000 image (one made `data convert` grow to 20 GB) is a skipped item
    naming the file and its size, found from its header: nothing decodes it."""
    from msde_bench.data import pairs

    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    for i in range(3):
        _face(i).save(src / "happy" / f"face{i}.png")
    Image.new("L", (10_000, 10_000)).save(src / "happy" / "huge.png")  # a few KB on disk, 100 MP decoded
    decoded = []
    load = Image.Image.load

    def counting(self):
        if self.size[0] * self.size[1] > pairs.MAX_PIXELS:
            decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(Image.Image, "load", counting)
    report = convert("imagefolder", src, tmp_path / "out", landmarks="off")
    assert report.written == 3 and not decoded
    (skipped,) = [s for s in report.skipped if "huge.png" in s]
    assert "10000 x 10000 pixels (100 MP): larger than the 16.8 MP msde-bench decodes" in skipped
    with pytest.raises(DataError, match="larger than the 16.8 MP"):
        pairs.load_image(src / "happy" / "huge.png")
    assert not decoded
