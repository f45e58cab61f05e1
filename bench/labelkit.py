"""Hand labelling of the accuracy ground truth (bench/labels/), and the label files' model.

Method (see bench/labels/README.md): the models propose boxes at a low threshold, a person
looks at every proposed frame drawn with numbered boxes and a coordinate grid, and edits the
file (delete, relabel, move, add, mark ignore) until the picture matches what they see.

    .venv/bin/python bench/labelkit.py propose intel --every 2
    .venv/bin/python bench/labelkit.py render intel 0 2 4 --out /tmp/lab
    .venv/bin/python bench/labelkit.py edit intel 4 --drop 3 --cls 1=truck --add car:10,20,80,60

The label files' model (`LabelFile`, `CLIPS`, `read_frames`) is shared with
bench/accuracy.py and tests/bench/test_labels.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.assets import asset  # noqa: E402

LABELS = REPO / "bench" / "labels"
CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
MIN_SIDE = 10
"""Objects whose box is smaller than this (pixels, shorter side) are ignore regions."""

CLIPS = {
    "vtest": "var/footage/vtest.avi",
    "intel": "footage/intel-person-bicycle-car.gif",
    "mmyolo": "footage/mmyolo-road-motorcycles-bus.mp4",
    "drone": "footage/drone-car-park.mp4",
    "aboda4": "footage/aboda-video4-sidewalk-bag-left.avi",
    "aboda1": "footage/aboda-video1-corridor-backpack-left.mp4",
    "dog": "var/footage/dog.jpg",
}
"""Label file stem → clip, relative to the shared assets root or the repository (var/)."""


def clip_path(clip: str) -> Path | None:
    """The clip's file: `var/footage/...` in the checkout, else under the shared assets."""
    if clip.startswith("var/"):
        path = REPO / clip
        return path if path.exists() else None
    return asset(clip)


@dataclass
class Box:
    cls: str
    xyxy: tuple[float, float, float, float]


@dataclass
class Frame:
    index: int
    boxes: list[Box] = field(default_factory=list)
    ignore: list[tuple[float, float, float, float]] = field(default_factory=list)


@dataclass
class LabelFile:
    clip: str
    width: int
    height: int
    frames: list[Frame]
    path: Path | None = None

    @classmethod
    def load(cls, path: Path) -> LabelFile:
        data = json.loads(path.read_text())
        frames = [
            Frame(
                f["frame"],
                [Box(b[0], tuple(b[1:5])) for b in f["boxes"]],
                [tuple(i) for i in f["ignore"]],
            )
            for f in data["frames"]
        ]
        return cls(data["clip"], data["width"], data["height"], frames, path)

    def dump(self) -> str:
        """One frame per block, one box per line: diffs stay readable."""

        def nums(xyxy: Iterable[float]) -> str:
            return ", ".join(str(round(v)) for v in xyxy)

        blocks = []
        for f in sorted(self.frames, key=lambda f: f.index):
            boxes = ",\n".join(f'      ["{b.cls}", {nums(b.xyxy)}]' for b in f.boxes)
            ignore = ",\n".join(f"      [{nums(i)}]" for i in f.ignore)
            blocks.append(
                f'    {{"frame": {f.index},\n     "boxes": [\n{boxes}\n     ],\n'
                f'     "ignore": [\n{ignore}\n     ]}}'
            )
        head = (
            f'{{"clip": "{self.clip}", "width": {self.width}, "height": {self.height},\n'
            f' "frames": [\n'
        )
        text = head + ",\n".join(blocks) + "\n ]}\n"
        json.loads(text)
        return text.replace("[\n\n     ]", "[]")

    def save(self) -> None:
        assert self.path is not None
        self.path.write_text(self.dump())

    def frame(self, index: int) -> Frame:
        return next(f for f in self.frames if f.index == index)


def label_files() -> list[Path]:
    """The clips' label files (bench/labels/ holds other benches' labels too)."""
    return [path for name in sorted(CLIPS) if (path := LABELS / f"{name}.json").exists()]


def read_frames(path: Path, wanted: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Frames by index, decoded in order (seeking is not frame-exact for every codec)."""
    wanted = sorted(set(wanted))
    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        if wanted == [0]:
            yield 0, cv2.imread(str(path))
        return
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        for target in wanted:
            while index <= target:
                ok, image = capture.read()
                if not ok:
                    return
                if index == target:
                    yield index, image
                index += 1
    finally:
        capture.release()


def frame_count(path: Path) -> int:
    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        return 1
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


# --- labelling CLI ---


def propose(name: str, every: int, start: int, conf: float, force: bool = False) -> None:
    """Draft label file: the union of every model's boxes (overlaps above IoU 0.7 merged)."""
    from bench.accuracy import MODELS, load

    target = LABELS / f"{name}.json"
    if target.exists() and not force:
        sys.exit(f"{target} exists: hand-made labels are not overwritten without --force")
    clip = CLIPS[name]
    path = clip_path(clip)
    if path is None:
        sys.exit(f"{clip} is absent")
    runners = [runner for spec in MODELS if (runner := load(spec, threads=2)) is not None]
    frames, size = [], (0, 0)
    for index, image in read_frames(path, range(start, frame_count(path), every)):
        size = image.shape[1], image.shape[0]
        found = [runner.detect(image, conf=conf) for runner in runners]
        boxes = np.concatenate([f.xyxy for f in found])
        scores = np.concatenate([f.scores for f in found])
        classes = [c for f in found for c in f.classes]
        wh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
        kept = np.array(cv2.dnn.NMSBoxes(wh.tolist(), scores.tolist(), conf, 0.7), int)
        w, h = size
        frame = Frame(index)
        for i in kept.reshape(-1):
            x1, y1, x2, y2 = np.clip(boxes[i], 0, [w, h, w, h])
            frame.boxes.append(Box(classes[i], (x1, y1, x2, y2)))
        frames.append(frame)
        print(f"frame {index}: {len(frame.boxes)} proposals", file=sys.stderr)
    LabelFile(clip, size[0], size[1], frames, target).save()
    print(target)


COLOURS = {
    "person": (0, 255, 0),
    "bicycle": (255, 255, 0),
    "car": (0, 165, 255),
    "motorcycle": (255, 0, 255),
    "bus": (0, 0, 255),
    "truck": (255, 0, 0),
}


@dataclass(frozen=True, slots=True)
class View:
    """What part of a frame to draw, how large, with ruler ticks every `grid` pixels."""

    scale: float = 1.0
    grid: int = 20
    crop: tuple[float, float, float, float] | None = None


def draw(image: np.ndarray, frame: Frame, view: View) -> np.ndarray:
    """The frame with its numbered boxes, ignore regions (grey) and a pixel ruler on all sides,
    so coordinates can be read off the picture."""
    ox, oy, ex, ey = (int(v) for v in view.crop or (0, 0, image.shape[1], image.shape[0]))
    scale = view.scale
    canvas = cv2.resize(
        image[oy:ey, ox:ex], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
    )
    h, w = canvas.shape[:2]

    def at(x: float, y: float) -> tuple[int, int]:
        return int((x - ox) * scale), int((y - oy) * scale)

    for g in range(0, max(image.shape[:2]), view.grid):
        colour = (255, 255, 255) if g % (view.grid * 5) == 0 else (190, 190, 190)
        gx, gy = at(g, g)
        if ox <= g < ex:
            cv2.line(canvas, (gx, 0), (gx, 6), colour, 1)
            cv2.line(canvas, (gx, h - 7), (gx, h - 1), colour, 1)
            cv2.putText(canvas, str(g), (gx + 1, 16), 0, 0.35, colour, 1)
        if oy <= g < ey:
            cv2.line(canvas, (0, gy), (6, gy), colour, 1)
            cv2.line(canvas, (w - 7, gy), (w - 1, gy), colour, 1)
            cv2.putText(canvas, str(g), (8, gy + 4), 0, 0.35, colour, 1)
    for i, region in enumerate(frame.ignore):
        p1, p2 = at(*region[:2]), at(*region[2:])
        cv2.rectangle(canvas, p1, p2, (128, 128, 128), 1)
        cv2.putText(canvas, f"i{i}", (p1[0] + 1, p2[1] - 2), 0, 0.4, (128, 128, 128), 1)
    for i, box in enumerate(frame.boxes):
        p1, p2 = at(*box.xyxy[:2]), at(*box.xyxy[2:])
        colour = COLOURS[box.cls]
        cv2.rectangle(canvas, p1, p2, colour, 1)
        for thickness, ink in ((3, (0, 0, 0)), (1, colour)):
            cv2.putText(
                canvas, f"{i}{box.cls[:2]}", (p1[0] + 1, p1[1] + 11), 0, 0.4, ink, thickness
            )
    for thickness, ink in ((3, (0, 0, 0)), (1, (0, 255, 255))):
        cv2.putText(canvas, f"#{frame.index}", (w - 70, h - 12), 0, 0.6, ink, thickness)
    return canvas


def sheet(pictures: list[np.ndarray], columns: int) -> np.ndarray:
    """Same-sized pictures in a grid, black where a row runs short."""
    blank = np.zeros_like(pictures[0])
    rows = [pictures[r : r + columns] for r in range(0, len(pictures), columns)]
    return np.vstack([np.hstack(row + [blank] * (columns - len(row))) for row in rows])


def render(
    name: str, indices: list[int], out: Path, view: View, per_sheet: int = 1, columns: int = 1
) -> None:
    """PNG sheets of the labelled frames (all of them without `indices`) to look at."""
    labels = LabelFile.load(LABELS / f"{name}.json")
    path = clip_path(labels.clip)
    if path is None:
        sys.exit(f"{labels.clip} is absent")
    out.mkdir(parents=True, exist_ok=True)
    drawn = [
        (index, draw(image, labels.frame(index), view))
        for index, image in read_frames(path, indices or [f.index for f in labels.frames])
    ]
    for start in range(0, len(drawn), per_sheet):
        group = drawn[start : start + per_sheet]
        target = out / f"{name}_{group[0][0]:05d}.png"
        cv2.imwrite(str(target), sheet([picture for _, picture in group], columns))
        print(target)


def parse_xyxy(text: str) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in text.split(","))
    assert len(values) == 4 and values[0] < values[2] and values[1] < values[3], text
    return values  # type: ignore[return-value]


def edit(name: str, index: int, args: argparse.Namespace) -> None:
    """Edits a frame's boxes by the numbers its last render drew (all edits at once)."""
    labels = LabelFile.load(LABELS / f"{name}.json")
    frame = labels.frame(index)
    boxes = list(frame.boxes)
    for spec in args.cls:
        i, cls = spec.split("=")
        assert cls in CLASSES, cls
        boxes[int(i)] = Box(cls, boxes[int(i)].xyxy)
    for spec in args.set:
        i, xyxy = spec.split("=")
        boxes[int(i)] = Box(boxes[int(i)].cls, parse_xyxy(xyxy))
    drop = {int(i) for spec in args.drop for i in spec.split(",")}
    to_ignore = {int(i) for spec in args.ign for i in spec.split(",")}
    frame.ignore = [ig for j, ig in enumerate(frame.ignore) if j not in set(args.unign)]
    frame.ignore += [boxes[i].xyxy for i in sorted(to_ignore)]
    frame.boxes = [b for i, b in enumerate(boxes) if i not in drop | to_ignore]
    for spec in args.add:
        cls, xyxy = spec.split(":")
        assert cls in CLASSES, cls
        frame.boxes.append(Box(cls, parse_xyxy(xyxy)))
    for spec in args.addign:
        frame.ignore.append(parse_xyxy(spec))
    labels.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("propose")
    p.add_argument("clip", choices=CLIPS)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--conf", type=float, default=0.2)
    p.add_argument("--force", action="store_true", help="overwrite an existing label file")
    r = sub.add_parser("render")
    r.add_argument("clip", choices=CLIPS)
    r.add_argument("frames", type=int, nargs="*")
    r.add_argument("--out", type=Path, default=Path("/tmp/lab"))
    r.add_argument("--scale", type=float, default=1.0)
    r.add_argument("--grid", type=int, default=20)
    r.add_argument("--crop", type=parse_xyxy, help="x1,y1,x2,y2 in frame pixels")
    r.add_argument("--sheet", type=int, default=1, help="frames per picture")
    r.add_argument("--columns", type=int, default=1)
    e = sub.add_parser("edit")
    e.add_argument("clip", choices=CLIPS)
    e.add_argument("frame", type=int)
    e.add_argument("--drop", action="append", default=[], help="ids, comma separated")
    e.add_argument("--ign", action="append", default=[], help="ids to turn into ignores")
    e.add_argument("--unign", action="append", type=int, default=[], help="ignore ids")
    e.add_argument("--cls", action="append", default=[], help="id=class")
    e.add_argument("--set", action="append", default=[], help="id=x1,y1,x2,y2")
    e.add_argument("--add", action="append", default=[], help="class:x1,y1,x2,y2")
    e.add_argument("--addign", action="append", default=[], help="x1,y1,x2,y2")
    args = parser.parse_args()
    if args.command == "propose":
        propose(args.clip, args.every, args.start, args.conf, args.force)
    elif args.command == "render":
        view = View(args.scale, args.grid, args.crop)
        render(args.clip, args.frames, args.out, view, args.sheet, args.columns)
    else:
        edit(args.clip, args.frame, args)


if __name__ == "__main__":
    main()
