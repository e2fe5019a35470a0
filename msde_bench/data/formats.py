"""The public datasets `data convert --format` and `--data FORMAT:SRC` read: one table, from which the
command line's choices and help, the dataset loaders' registration and the README's format table come.

Light on purpose (no image library): the command line imports it to build its options. Each
format's reader lives in msde_bench.data.convert (`READERS`); a test checks that both name the same
formats."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """One source layout: what SRC holds, how its labels map, its split, where the subjects come
    from, the views it can choose among (`--views`; the default first), and where to get it."""

    name: str
    src: str
    labels: str
    split: str
    subjects: str
    #: the view codes `--views` accepts, and the default choice ("" : the format has no views)
    views: tuple[str, ...] = ()
    default_views: tuple[str, ...] = ()
    #: `--map NAME=CLASS|drop` applies to its class names (folders, or RaFD's words)
    maps_classes: bool = False
    #: where to get it, its citation and licence
    get: str = ""
    #: a one-line summary for `data convert --help`
    short: str = ""


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("rafdb", "`EmoLabel/list_patition_label.txt`, `Image/aligned/*_aligned.jpg`", "1-7 (same order as MSD-E)",
           "`train_*` / `test_*`", "none (one subject per image)",
           get="RAF-DB (Li, Deng & Du, CVPR 2017), by request to its authors for non-commercial research",
           short="EmoLabel/list_patition_label.txt + Image/aligned"),
    Format("fer2013", "`fer2013.csv` (emotion, pixels, Usage; 48 x 48 grey); with `fer2013new.csv` beside it the "
           "FER+ majority label is used", "0 Angry ... 6 Neutral",
           "Training / PublicTest (validation) / PrivateTest (test)", "none (one subject per image)",
           get="FER-2013 (Goodfellow et al., ICONIP 2013), from the Kaggle challenge; FER+ labels (Barsoum et "
               "al., ICMI 2016) from Microsoft's FERPlus repository (MIT)",
           short="fer2013.csv (+ FER+ votes in fer2013new.csv beside it)"),
    Format("affectnet", "`training.csv`, `validation.csv`, images under `Manually_Annotated_Images/`; faces "
           "cropped to the CSV's box", "0-6 (contempt, none, uncertain, no-face dropped)", "training / validation",
           "none (one subject per image)",
           get="AffectNet (Mollahosseini et al., TAC 2017), by request to its authors for research",
           short="training.csv/validation.csv + images, cropped to the face box"),
    Format("imagefolder", "one folder per class (happy/happiness, angry/anger, ... any case), optionally under "
           "`train/`, `val/` or `validation/`, and `test/`", "folder names",
           "`train/` / `val/`, `validation/` (validation) / `test/`",
           "`--subject-pattern REGEX`, else one subject per image", maps_classes=True,
           short="one folder per class (optionally under train/ and test/)"),
    Format("ckplus", "CK+'s class folders (anger, contempt, disgust, fear, happy, sadness, surprise) of "
           "`S<subject>_<sequence>_<frame>` files", "folder names (contempt dropped unless `--map`)",
           "none: use `--protocol clean`", "file names (`S010_004_00000017.png`: subject S010, sequence 4)",
           maps_classes=True,
           get="CK+ (Lucey et al., CVPR workshops 2010), from its authors under their research licence",
           short="CK+'s class folders, subject and sequence from each name (S010_004_00000017.png)"),
    Format("kdef", "KDEF as distributed: `AF01AFS.JPG` (session A/B, sex F/M, person 01-35, expression, view), "
           "flat or in one folder per session and person", "AF fear, AN anger, DI disgust, HA happiness, "
           "NE neutral, SA sadness, SU surprise", "none: use `--protocol clean`",
           "file names (sex + person: F01; the session is the sequence)",
           views=("S", "HL", "HR", "FL", "FR"), default_views=("S",),
           get="KDEF (Lundqvist, Flykt & Öhman, 1998), from kdef.se, free for non-commercial research",
           short="KDEF's AF01AFS.JPG names (flat or per person); frontal (S) by default, --views S,HL,HR,FL,FR"),
    Format("jaffe", "JAFFE as distributed: `KA.AN1.39.tiff` (person, expression + take, number), flat",
           "AN anger, DI disgust, FE fear, HA happiness, NE neutral, SA sadness, SU surprise",
           "none: use `--protocol clean`", "file names (the two letters: KA)",
           get="JAFFE (Lyons, Kamachi & Gyoba, 1998), from its Zenodo record under its research licence",
           short="JAFFE's KA.AN1.39.tiff names"),
    Format("rafd", "RaFD as distributed: `Rafd090_01_Caucasian_female_angry_frontal.jpg` (camera angle, person, "
           "ethnicity, sex, expression, gaze), flat", "angry, disgusted, fearful, happy, neutral, sad, surprised "
           "(contemptuous dropped unless `--map`)", "none: use `--protocol clean`",
           "file names (the person's number; the three gazes of one expression are one sequence)",
           views=("090", "045", "135", "000", "180"), default_views=("090",), maps_classes=True,
           get="RaFD (Langner et al., Cognition & Emotion 2010), from rafd.socsci.ru.nl for research",
           short="RaFD's Rafd090_01_..._angry_frontal.jpg names; camera 090 (frontal) by default, --views"),
    Format("oulu", "Oulu-CASIA as distributed: `VL/Strong/P001/Anger/000.jpeg` (camera VL/NI, lighting "
           "Strong/Weak/Dark, person, expression, one sequence of frames), or SRC = one `<camera>/<lighting>` "
           "folder", "Anger, Disgust, Fear, Happiness, Sadness, Surprise (no neutral)", "none: use `--protocol clean`",
           "folder names (P001; each expression's frames are one sequence); the last three frames of each "
           "sequence, as the field uses them",
           views=("VL/Strong", "VL/Weak", "VL/Dark", "NI/Strong", "NI/Weak", "NI/Dark"), default_views=("VL/Strong",),
           maps_classes=True,
           get="Oulu-CASIA NIR&VIS (Zhao et al., IVC 2011), from the University of Oulu by request",
           short="Oulu-CASIA's VL/Strong/P001/Anger/*.jpeg; the last 3 frames; VL/Strong by default, --views"),
)}

#: `data convert --format`'s and `--data FORMAT:SRC`'s choices, in the table's order
FORMAT_NAMES = tuple(FORMATS)


def format_help() -> str:
    """`data convert --format`'s help: one clause per format."""
    return "; ".join(f"{f.name}: {f.short or f.src}" for f in FORMATS.values()) + "."


def markdown_table() -> str:
    """The README's table of formats (a test checks the README holds exactly this)."""
    rows = ["| format | SRC holds | labels | split | subjects | views (default first) | where to get it |",
            "|---|---|---|---|---|---|---|"]
    for f in FORMATS.values():
        views = ", ".join(f"`{v}`" for v in (*f.default_views, *(v for v in f.views if v not in f.default_views)))
        rows.append(f"| `{f.name}` | {f.src} | {f.labels} | {f.split} | {f.subjects} | {views or '-'} | "
                    f"{f.get or '-'} |")
    return "\n".join(rows)
