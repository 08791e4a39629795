"""Tuning and reporting sets (issue 28): every choice is made on the tuning halves, reports cover both.

Images: choices on the bundled scikit-image colour samples (``images.COLOR_SAMPLES``); reports also on 13
photographs no choice ever saw, from Debian bookworm's ``lomiri-wallpapers-16.04`` (20.04.0-2, the Ubuntu Touch
16.04 wallpapers; CC-BY-4.0, CC-BY-SA-4.0 and CC0-1.0 photographs by their named authors, see the package's
``/usr/share/doc/lomiri-wallpapers-16.04/copyright``). Its two other files are left out: ``umang`` is a rendered
abstract and ``analogpattern`` a texture, not photographs of scenes or objects.

A second set of 12 photographs, ``FILES2`` (``heldout2``), from Debian bookworm's ``mate-backgrounds``
(1.26.0-1, its ``nature`` folder; GPL-2+, see ``/usr/share/doc/mate-backgrounds/copyright``), was added after
the first had been looked at (issue 28's inversion schedule): a choice made with both earlier halves in view is
reported on it.

Classes: choices on ``TUNING_CLASSES`` (25, 75, …, 975, the 20 classes the benchmarks have always used); reports
also on ``REPORTING_CLASSES`` (50, 100, …, 950 and 999: 0-based ImageNet indices, disjoint from the tuning ones).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PreimageError

PACKAGE = "lomiri-wallpapers-16.04"
PACKAGE_VERSION = "20.04.0-2"
INSTALL = f"apt-get install -y {PACKAGE}"
FOLDER = "/usr/share/backgrounds"
#: The held-out photographs, as the package installs them (all JPEG, 1365×1074 to 5312×2988).
FILES = tuple(f"{FOLDER}/{name}.jpg" for name in (
    "Bridge_by_Sander_Klootwijk",  # a beach under a bridge's cables
    "Dragonfly_by_Bolly",  # a tree's leaves against the sky
    "Picture_0B_by_freespace",  # a fig in a red bowl
    "Picture_1A_by_freespace",  # paint brushes
    "Wine_by_Jakkub_Mede",  # a room: a drum, a table, a bottle of wine
    "aitzgorri_by_Aitzol_Berasategi",  # a mountain meadow in autumn
    "free_by_Peter_Nerlich",  # a toy bird hanging from a lamp
    "friends_by_Aitzol_Berasategi",  # two dogs in a doorway
    "greentock_by_Peter_Nerlich",  # a wall clock
    "life_by_Aitzol_Berasategi",  # a stream in a forest
    "picosdeeuropa_by_Aitzol_Berasategi",  # mountains and a path
    "seeding_by_Clements_Engelhardt",  # dandelion clocks in a field
    "sunset_by_Aitzol_Berasategi",  # a sunset over hills
))
PACKAGE2 = "mate-backgrounds"
PACKAGE2_VERSION = "1.26.0-1"
#: The second held-out set: the 12 photographs of mate-backgrounds' nature folder (JPEG, 1280×1024 to 2560×1920).
FILES2 = tuple(f"{FOLDER}/mate/nature/{name}.jpg" for name in (
    "Aqua",  # a water drop splashing
    "Blinds",  # a leaf's veins, close up
    "Dune",  # dune grass and the sea
    "FreshFlower",  # an orange gerbera, close up
    "Garden",  # a red marigold
    "GreenMeadow",  # young grass blades
    "LadyBird",  # a ladybird on a stem among blue flowers
    "RainDrops",  # raindrops on grass
    "Storm",  # storm clouds over a road
    "TwoWings",  # a dandelion seed before orange flowers
    "Wood",  # weathered wooden boards
    "YellowFlower",  # a yellow flower, close up
))
#: The image sets by name: files and the Debian package that installs them.
IMAGE_SETS: dict[str, tuple[tuple[str, ...], str]] = {"heldout": (FILES, PACKAGE), "heldout2": (FILES2, PACKAGE2)}

#: The 20 classes every choice is made on (the benchmarks' classes until now).
TUNING_CLASSES: tuple[int, ...] = tuple(range(25, 1000, 50))
#: 20 other classes, reported on but never chosen on.
REPORTING_CLASSES: tuple[int, ...] = tuple(range(50, 1000, 50)) + (999,)
#: The names ``--classes`` accepts for the two sets.
CLASS_SETS: dict[str, tuple[int, ...]] = {"tuning": TUNING_CLASSES, "reporting": REPORTING_CLASSES}


def parse_classes(text: str, option: str = "--classes") -> list[int]:
    """``tuning``, ``reporting`` or comma-separated ImageNet class indices (0–999) → the class list; a one-line
    error naming ``option`` otherwise."""
    name = text.strip().lower()
    if name in CLASS_SETS:
        return list(CLASS_SETS[name])
    try:
        classes = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise PreimageError(f"{option} takes 'tuning', 'reporting' or class indices like 25,525; got '{text}'") \
            from None
    if not classes:
        raise PreimageError(f"{option} needs at least one class (or 'tuning' or 'reporting')")
    bad = [c for c in classes if not 0 <= c < 1000]
    if bad:
        raise PreimageError(f"{option}: class {bad[0]} is out of range (0–999)")
    return classes


def heldout_images(root: str | Path = "/", name: str = "heldout") -> list[str]:
    """The paths of held-out set ``name`` (``IMAGE_SETS``) under ``root`` (``/``: as installed); a one-line
    error naming the install command when any is missing."""
    files, package = IMAGE_SETS[name]
    paths = [str(Path(root) / f.lstrip("/")) for f in files]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise PreimageError(f"the held-out photographs are missing ({len(missing)} of {len(paths)} files, e.g. "
                            f"{missing[0]}): install Debian's {package} with 'apt-get install -y {package}'")
    return paths
