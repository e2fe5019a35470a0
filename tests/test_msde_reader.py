"""Every reader error case: one line naming the file and the problem, exit code 2, no result."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from msde_bench.cli import main
from msde_bench.data.msde import read_msde
from msde_bench.data.pairs import ImageCache
from msde_bench.errors import DataError


def _validate(root: Path):
    return CliRunner().invoke(main, ["data", "validate", str(root)])


def _first(root: Path) -> str:
    return sorted(p.name for p in (root / "MSD-E").iterdir())[0]


def _rename_pair(root: Path, old: str, new: str) -> None:
    for sub in ("MSD-E", "MSD-ME"):
        (root / sub / old).rename(root / sub / new)
    lst = root / "Paired_files.txt"
    lst.write_text(lst.read_text().replace(old + "\n", new + "\n"))


def _expect_error(root: Path, *fragments: str) -> str:
    res = _validate(root)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in res.output
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    return lines[0]


def test_sound_dataset_validates(tiny_copy):
    res = _validate(tiny_copy)
    assert res.exit_code == 0, res.output
    assert "56 pairs, 8 subjects" in res.output


def test_missing_partner(tiny_copy):
    (tiny_copy / "Paired_files.txt").unlink()
    name = _first(tiny_copy)
    (tiny_copy / "MSD-ME" / name).unlink()
    _expect_error(tiny_copy, str(tiny_copy / "MSD-E" / name), "missing partner", "MSD-ME")


def test_missing_partner_of_a_masked_image(tiny_copy):
    (tiny_copy / "Paired_files.txt").unlink()
    name = _first(tiny_copy)
    (tiny_copy / "MSD-E" / name).unlink()
    _expect_error(tiny_copy, str(tiny_copy / "MSD-ME" / name), "missing partner")


def test_label_not_an_integer(tiny_copy):
    _rename_pair(tiny_copy, _first(tiny_copy), "3_x_a.png")
    _expect_error(tiny_copy, "3_x_a.png", "label 'x'", "not an integer")


def test_label_out_of_range(tiny_copy):
    _rename_pair(tiny_copy, _first(tiny_copy), "3_7_a.png")
    _expect_error(tiny_copy, "3_7_a.png", "out of range 0-6")


def test_subject_not_an_integer(tiny_copy):
    _rename_pair(tiny_copy, _first(tiny_copy), "bob_1_a.png")
    _expect_error(tiny_copy, "bob_1_a.png", "subject 'bob'", "not an integer")


def test_corrupt_image(tiny_copy):
    name = _first(tiny_copy)
    path = tiny_copy / "MSD-ME" / name
    path.write_bytes(path.read_bytes()[:60])
    _expect_error(tiny_copy, str(path), "image")


def test_not_an_image_at_all(tiny_copy):
    name = _first(tiny_copy)
    path = tiny_copy / "MSD-E" / name
    path.write_text("hello")
    _expect_error(tiny_copy, str(path), "not a readable image")


def test_empty_dataset(tmp_path):
    (tmp_path / "MSD-E").mkdir()
    (tmp_path / "MSD-ME").mkdir()
    _expect_error(tmp_path, str(tmp_path), "empty dataset")


def test_missing_folder(tmp_path):
    (tmp_path / "MSD-E").mkdir()
    _expect_error(tmp_path, "MSD-ME", "folder not found")


def test_name_listed_twice(tiny_copy):
    lst = tiny_copy / "Paired_files.txt"
    names = lst.read_text().splitlines()
    lst.write_text("\n".join(names + [names[2]]) + "\n")
    _expect_error(tiny_copy, f"{lst}:{len(names) + 1}", "listed twice", "line 3")


def test_unsupported_extension(tiny_copy):
    (tiny_copy / "MSD-E" / "1_2_a.gif").write_bytes(b"GIF89a")
    _expect_error(tiny_copy, "1_2_a.gif", "unsupported extension '.gif'")


def test_pair_list_naming_a_missing_file(tiny_copy):
    lst = tiny_copy / "Paired_files.txt"
    lst.write_text(lst.read_text() + "99_1_ghost.png\n")
    _expect_error(tiny_copy, f"{lst}:57", "99_1_ghost.png", "missing from")


def test_pair_list_restricts_the_set(tiny_copy):
    lst = tiny_copy / "Paired_files.txt"
    lst.write_text("\n".join(lst.read_text().splitlines()[:10]) + "\n")
    assert len(read_msde(tiny_copy)) == 10


def test_grayscale_rgba_and_palette_are_converted(tiny_copy):
    names = sorted(p.name for p in (tiny_copy / "MSD-E").iterdir())[:3]
    for name, mode in zip(names, ("L", "RGBA", "P")):
        p = tiny_copy / "MSD-E" / name
        with Image.open(p) as im:
            im.convert(mode).save(p)
    assert _validate(tiny_copy).exit_code == 0
    ds = read_msde(tiny_copy)
    cache = ImageCache(ds, 32)
    for i, p in enumerate(ds.pairs):
        if p.name in names:
            img = cache.non_masked[i]
            assert img.shape == (3, 32, 32)
    gray = [i for i, p in enumerate(ds.pairs) if p.name == names[0]][0]
    g = cache.non_masked[gray].numpy()
    assert np.array_equal(g[0], g[1]) and np.array_equal(g[1], g[2])


def test_reader_error_carries_the_path(tiny_copy):
    _rename_pair(tiny_copy, _first(tiny_copy), "1_9_a.png")
    with pytest.raises(DataError) as e:
        read_msde(tiny_copy)
    assert e.value.path.endswith("1_9_a.png")


def test_stats_prints_tables(tiny_root):
    res = CliRunner().invoke(main, ["data", "stats", str(tiny_root)])
    assert res.exit_code == 0, res.output
    assert "| subjects" in res.output and "| 8" in res.output
    assert "| Surprise     |       8 |" in res.output
    assert "| 32x32        |      112 |" in res.output
    assert "7 / 7.00 / 7" in res.output


def test_run_on_bad_data_writes_no_result(tiny_copy, tmp_path):
    _rename_pair(tiny_copy, _first(tiny_copy), "1_9_a.png")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_copy), "--out", str(out), "--epochs", "1",
                                    "--folds", "2", "--image-size", "32", "--device", "cpu"])
    assert res.exit_code == 2
    assert "1_9_a.png" in res.output and "out of range" in res.output
    assert not out.exists() or not any(out.iterdir())


def _bomb(path: Path) -> None:
    """A small PNG whose header claims 14000 x 14000 pixels (PIL refuses it as a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 14000, 14000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


def _break(root: Path, how: str) -> tuple[Path, str]:
    """Breaks one image (or meta.json) of the set; returns the path and what the error must say."""
    path = root / "MSD-ME" / _first(root)
    path.unlink()
    if how == "zero bytes":
        path.write_bytes(b"")
        return path, "not a readable image"
    if how == "text named .png":
        path.write_text("hello")
        return path, "not a readable image"
    if how == "dangling symlink":
        path.symlink_to(root / "nowhere.png")
        return path, "file not found"
    if how == "symlink loop":
        path.symlink_to(path)
        return path, "cannot read"
    if how == "decompression bomb":
        _bomb(path)
        return path, "safety limit"
    if how == "meta.json not an object":
        Image.open(root / "MSD-E" / _first(root)).save(path)
        (root / "meta.json").write_text("[1, 2]")
        return root / "meta.json", "expected a JSON object, found list"
    raise AssertionError(how)


HOW = ["zero bytes", "text named .png", "dangling symlink", "symlink loop", "decompression bomb",
       "meta.json not an object"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("command", ["validate", "stats", "run"])
def test_one_image_check_for_validate_stats_and_run(tiny_copy, tmp_path, how, command):
    path, problem = _break(tiny_copy, how)
    args = {"validate": ["data", "validate", str(tiny_copy)], "stats": ["data", "stats", str(tiny_copy)],
            "run": ["run", "--data", str(tiny_copy), "--device", "cpu", "--epochs", "1", "--folds", "2",
                    "--out", str(tmp_path / "out")]}[command]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}:") and problem in last, last
    assert "Traceback" not in res.output
    assert not list((tmp_path / "out").glob("*.json")) if (tmp_path / "out").exists() else True


def test_a_16_bit_greyscale_image_is_scaled_not_clipped(tiny_copy):
    """A full-range 16-bit gradient keeps its gradient (PIL's convert("RGB") would make 99 % of it white)."""
    path = tiny_copy / "MSD-E" / _first(tiny_copy)
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    from msde_bench.data.pairs import load_image

    got = np.asarray(load_image(path))[..., 0]
    assert got[0, 0] == 0 and got[0, -1] == 255 and np.all(np.diff(got[0].astype(int)) >= 0)
    assert np.allclose(got[0], np.linspace(0, 255, 32), atol=1.0)
    assert _validate(tiny_copy).exit_code == 0


def test_a_bomb_as_the_first_non_masked_image_is_one_line_in_run(tiny_copy, tmp_path):
    """Issue 40 (8): run's memory check opens the first non-masked image; a decompression bomb there
    is the same one line as anywhere else, never a traceback."""
    path = tiny_copy / "MSD-E" / _first(tiny_copy)
    path.unlink()
    _bomb(path)
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_copy), "--device", "cpu", "--epochs", "1", "--folds",
                                    "2", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}:") and "safety limit" in last, last
    assert "Traceback" not in res.output
