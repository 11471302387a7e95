"""Text for pages without a usable text layer: the page rendered at a bounded resolution,
read by RapidOCR (PP-OCR detection and recognition models shipped inside its wheel, run on
onnxruntime), turned upright, and laid out as paragraphs in reading order.

RapidOCR's own line-orientation classifier is off: on long lines it flips good lines upside
down and reads them as noise. The page's orientation is decided once for the whole page
instead (``_upright``).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pymupdf

from pagemill.onnx_threads import sessions_without_spinning
from pagemill.pdf.completeness import words
from pagemill.settings import Settings

log = logging.getLogger(__name__)

# A page needs OCR when its text layer holds fewer than this many words and images cover at
# least this share of it (a scan, maybe with a stray page number or an OCR'd-elsewhere stamp).
_FEW_WORDS = 10
_IMAGE_COVER = 0.5
# Lines read both ways to decide whether the page is upside down, and the margin by which the
# turned reading must win (recognition scores are 0..1; an upside-down line scores about 0.7).
_ORIENTATION_SAMPLES = 6
_FLIP_MARGIN = 0.05


class OcrEngine(Protocol):
    """What pagemill needs from an OCR engine: RapidOCR's call, and its steps after detection
    (cropping the detected lines and reading crops) to read lines it has already found."""

    text_score: float  # lines read with a lower score are dropped, as RapidOCR's call does

    def __call__(self, img_content: Any, use_det: bool | None = None, use_cls: bool | None = None,
                 use_rec: bool | None = None) -> Any: ...

    def load_img(self, img_content: Any) -> np.ndarray: ...

    def crop_text_regions(self, img: np.ndarray, det_boxes: np.ndarray) -> list[np.ndarray]: ...

    def recognize_txt(self, img: list[np.ndarray]) -> Any: ...


@dataclass(frozen=True)
class OcrText:
    markdown: str
    confidence: float  # mean recognition score of the page's lines, weighted by their length
    rotation: int  # degrees (counter-clockwise) the rendered page was turned to read it


@dataclass(frozen=True)
class _Line:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    score: float


def needs_ocr(page: pymupdf.Page) -> bool:
    """No text layer worth the name while images cover most of the page. Reads the page's
    drawing list only: no image is decoded. A page without images is settled from its
    resources alone (most text pages: Plan asks this of every page)."""
    if not page.get_images() or sum(words(page.get_text()).values()) >= _FEW_WORDS:
        return False
    area = abs(page.rect)
    if not area:
        return False
    covered = 0.0
    for kind, bbox in page.get_bboxlog():
        if kind == "fill-image":
            covered += abs(pymupdf.Rect(bbox) & page.rect)
    return covered / area >= _IMAGE_COVER


def largest_image_pixels(page: pymupdf.Page) -> int:
    """The pixel count of the page's largest image, from the image dictionaries alone."""
    return max((item[2] * item[3] for item in page.get_images(full=True)), default=0)


@lru_cache(maxsize=2)
def rapidocr_engine(threads: int = 0) -> OcrEngine:
    """One engine per process, its two models loaded (about a second) with sessions that do not
    spin (see onnx_threads: 8% less CPU for the same wall time on 2 cores). threads=0 lets
    onnxruntime use every core. Imported here so pages with a text layer never load OpenCV."""
    from rapidocr import RapidOCR
    from rapidocr.inference_engine.onnxruntime import main as rapidocr_onnxruntime

    engine = RapidOCR(params={
        "Global.log_level": "error",  # an empty page is not a warning here
        "Global.use_cls": False,
        # A batch of lines runs at its widest line's width: one line at a time read the corpus's
        # scans with 14% less CPU and the same words (bench/RESULTS.md, OCR in the seventh round).
        "Rec.rec_batch_num": 1,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads or -1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1 if threads else -1,
    })
    # RapidOCR would load each model on its first use, outside this block.
    with sessions_without_spinning(rapidocr_onnxruntime):
        engine._load_det_model()
        engine._load_rec_model()
    return engine


def render_for_ocr(page: pymupdf.Page, settings: Settings) -> np.ndarray:
    """The page in grey at settings.ocr_dpi, scaled down so it holds at most
    settings.ocr_max_pixels pixels."""
    zoom = settings.ocr_dpi / 72
    pixels = abs(page.rect) * zoom * zoom
    if pixels > settings.ocr_max_pixels:
        zoom *= (settings.ocr_max_pixels / pixels) ** 0.5
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False)
    return np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)[:, : pix.width].copy()


def ocr_image(engine: OcrEngine, image: np.ndarray) -> OcrText:
    """The image's text, upright, as markdown paragraphs in reading order."""
    rotation, lines = _upright(engine, image)
    if not lines:
        return OcrText(markdown="", confidence=0.0, rotation=rotation)
    weight = sum(len(line.text) for line in lines)
    confidence = sum(line.score * len(line.text) for line in lines) / weight if weight else 0.0
    return OcrText(markdown=_markdown(lines), confidence=round(confidence, 4), rotation=rotation)


def _lines(boxes: Any, texts: Any, scores: Any) -> list[_Line]:
    return [_line(box, text.strip(), float(score))
            for box, text, score in zip(boxes, texts, scores, strict=True) if text.strip()]


def _line(box: np.ndarray, text: str, score: float) -> _Line:
    xs, ys = box[:, 0], box[:, 1]
    return _Line(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()), text, score)


def _upright(engine: OcrEngine, image: np.ndarray) -> tuple[int, list[_Line]]:
    """(rotation, lines) of the page read upright, each line read once the right way up.
    Text lines are wider than tall, so a page whose lines are mostly tall lies on its side; a few
    of its longest lines are read as found and upside down, and the page is turned the way they
    read best (the margin keeps an upright page from flipping on a tie; a page on its side has no
    way up to prefer). A page turned has its lines found again: the detection model draws lines
    on their side or upside down a little taller, which would move paragraph breaks."""
    page = engine.load_img(image)  # in colour once: RapidOCR's call converts a grey page on every call
    boxes = _found(engine, page)
    if not len(boxes):
        return 0, []
    width, height = (boxes.max(axis=1) - boxes.min(axis=1)).T
    tall = height > 1.5 * width  # RapidOCR crops these turned a quarter counter-clockwise
    on_side = (width * height)[tall].sum() > (width * height)[width > 1.5 * height].sum()
    candidates = np.flatnonzero(tall) if on_side else np.arange(len(boxes))
    sample = candidates[np.argsort(-np.maximum(width, height)[candidates], kind="stable")[:_ORIENTATION_SAMPLES]]
    crops = engine.crop_text_regions(page, boxes[sample])
    as_found = engine.recognize_txt(crops)
    over = engine.recognize_txt([np.ascontiguousarray(np.rot90(crop, 2)) for crop in crops])
    flip = statistics.fmean(over.scores) > statistics.fmean(as_found.scores) + (0 if on_side else _FLIP_MARGIN)
    quarters = (1 if on_side else 0) + (2 if flip else 0)
    if quarters:
        page = np.ascontiguousarray(np.rot90(page, quarters))
        return 90 * quarters, _recognized(engine, page, _found(engine, page))
    return 0, _recognized(engine, page, boxes, (sample, as_found))


def _found(engine: OcrEngine, page: np.ndarray) -> np.ndarray:
    found = engine(page, use_det=True, use_cls=False, use_rec=False)
    return np.empty((0, 4, 2), np.float32) if found.boxes is None else np.asarray(found.boxes, np.float32)


def _recognized(engine: OcrEngine, page: np.ndarray, boxes: np.ndarray,
                done: tuple[np.ndarray, Any] | None = None) -> list[_Line]:
    """The page's lines as RapidOCR's call reads them: each found line cropped upright from the
    page (in colour, as the engine loaded it) and read, kept when its score reaches the engine's
    threshold. ``done``: the indices of lines already read, and that reading."""
    order = done[0].tolist() if done else []
    texts = list(done[1].txts) if done else []
    scores = list(done[1].scores) if done else []
    unread = np.setdiff1d(np.arange(len(boxes)), order)
    if len(unread):
        result = engine.recognize_txt(engine.crop_text_regions(page, boxes[unread]))
        order, texts, scores = order + unread.tolist(), texts + list(result.txts), scores + list(result.scores)
    kept = [k for k, score in enumerate(scores) if score >= engine.text_score]
    return _lines([boxes[order[k]] for k in kept], [texts[k] for k in kept], [scores[k] for k in kept])


def _markdown(lines: list[_Line]) -> str:
    height = statistics.median(ln.y1 - ln.y0 for ln in lines)
    paragraphs: list[str] = []
    for column in _reading_order(lines, height):
        rows = _rows(column)
        current: list[str] = []
        previous: _Line | None = None
        for row in rows:
            first = row[0]
            if previous is not None and first.y0 - previous.y1 > 0.6 * height:
                paragraphs.append(" ".join(current))
                current = []
            current.append(" ".join(line.text for line in row))
            previous = max(row, key=lambda ln: ln.y1)
        if current:
            paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs) + "\n"


def _rows(lines: list[_Line]) -> list[list[_Line]]:
    """Lines grouped into rows (vertical overlap of more than half a line), each left to right."""
    rows: list[list[_Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.y0 + ln.y1) / 2):
        middle = (line.y0 + line.y1) / 2
        if rows and rows[-1][0].y0 <= middle <= rows[-1][0].y1:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda ln: ln.x0) for row in rows]


def _reading_order(lines: list[_Line], height: float) -> list[list[_Line]]:
    """Recursive XY-cut: the region is cut at its widest empty band across or down it (a gap
    between columns must be at least a line high to count), top before bottom, left before
    right, until no cut is left; each piece is one column of text."""
    x_gap = _widest_gap([(ln.x0, ln.x1) for ln in lines])
    y_gap = _widest_gap([(ln.y0, ln.y1) for ln in lines])
    cut_down = x_gap is not None and x_gap[1] - x_gap[0] >= height
    if cut_down and (y_gap is None or x_gap[1] - x_gap[0] >= y_gap[1] - y_gap[0]):
        at = (x_gap[0] + x_gap[1]) / 2
        first, second = [ln for ln in lines if ln.x1 <= at], [ln for ln in lines if ln.x1 > at]
    elif y_gap is not None and y_gap[1] - y_gap[0] >= 0.6 * height:
        at = (y_gap[0] + y_gap[1]) / 2
        first, second = [ln for ln in lines if ln.y1 <= at], [ln for ln in lines if ln.y1 > at]
    else:
        return [lines]
    return _reading_order(first, height) + _reading_order(second, height)


def _widest_gap(spans: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The widest interval that no span covers, between the first span's start and the last end."""
    best: tuple[float, float] | None = None
    reach = None
    for start, end in sorted(spans):
        if reach is not None and start > reach and (best is None or start - reach > best[1] - best[0]):
            best = (reach, start)
        reach = end if reach is None else max(reach, end)
    return best
