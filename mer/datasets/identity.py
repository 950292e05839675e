"""Who a clip's subject is across the datasets of one corpus family, so that a person a
model trained on is recognised in another dataset of the same recordings.

SMIC-HS clips are cut from the SMIC-E recordings (SMIC-HS `s3` is SMIC-E's `s03`), and
the MEGC composite holds SMIC-HS: all are `smic:<number>`; CASME II and SAMM subjects are
`casme2:<number>` and `samm:<number>`. A built-in tree is played by real faces from pip
packages, the same faces in every layout: its subjects are `face:<source name>`, read from
the file the generator writes beside each tree's annotation (`FACES_FILE`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.records import ClipRecord
from mer.common.errors import MerError

FACES_FILE = "mer-faces.json"
# A record's `source` (a layout, or a composite part) -> its corpus family.
# SAMM Long Videos were filmed in the SAMM sessions: the same participants under the same numbers.
CORPORA = {"smic_hs": "smic", "smic_e": "smic", "smic": "smic", "casme2": "casme2", "samm": "samm", "samm_lv": "samm",
           "casme_sq": "casme_sq", "casme3": "casme3"}
_NUMBER = re.compile(r"(\d+)$")


def write_faces(folder: Path, faces: Mapping[int, str]) -> None:
    """Record which face (a `FaceSource` name) plays each subject number of a built-in tree,
    numbered as the tree's folders number them (SAMM's from 006)."""
    (Path(folder) / FACES_FILE).write_text(json.dumps({str(n): name for n, name in sorted(faces.items())}, indent=1))


def subject_number(subject: str) -> int:
    """3 for `s3`, `smic_s3`, `sub03`, `casme2_sub03`, `003`: the loaders end every subject id with its number."""
    return int(_NUMBER.search(subject).group(1))


def _faces_file(start: Path, root: Path, found: dict[Path, dict | None]) -> dict | None:
    """The faces file nearest above `start`, looking no higher than `root` when under it."""
    for folder in (start, *start.parents):
        if folder not in found:
            path = folder / FACES_FILE
            found[folder] = json.loads(path.read_text()) if path.is_file() else None
        if found[folder] is not None or folder == root:
            return found[folder]
    return None


def subject_identities(records: Sequence[ClipRecord], root: Path, built_in: bool = False) -> dict[str, str]:
    """Each subject of `records` (read from the tree at `root`) -> its identity. `built_in`: the
    generator wrote the tree, so every subject must have its face recorded."""
    root = Path(root).expanduser().resolve()
    found: dict[Path, dict | None] = {}
    identities: dict[str, str] = {}
    for record in records:
        if record.subject in identities:
            continue
        number = subject_number(record.subject)
        faces = _faces_file(Path(record.path).resolve().parent, root, found)
        if faces is None and built_in:
            raise MerError(f"{root} is a built-in tree written by an older mer, which did not record which face plays "
                           f"which subject ({FACES_FILE}); delete it so it is written again")
        if faces is None:
            identities[record.subject] = f"{CORPORA.get(record.source, record.source)}:{number}"
        elif str(number) in faces:
            identities[record.subject] = f"face:{faces[str(number)]}"
        else:
            raise MerError(f"{record.path}: subject {record.subject} is missing from the tree's {FACES_FILE}")
    return identities
