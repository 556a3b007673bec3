"""A varied corpus of images that are not brain MRI slices, made offline and deterministically, to measure how
many of them the out-of-distribution guard withholds.

Kinds: photos shipped with matplotlib (in colour and in grey), rendered text and code, charts, noise and textures,
a circuit-board drawing, and grey drawings in the manner of other medical images (a chest radiograph, an abdominal
CT slice, a knee MRI, a limb cross-section). None of it is used to fit the guard: the guard is fitted on brain
slices only, so the corpus measures it honestly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDE = 256


@dataclass
class NonBrainImage:
    kind: str
    image: np.ndarray  # (H, W) grey or (H, W, 3) colour, float32 in [0, 1]


def corpus(per_kind: int = 6, seed: int = 0) -> list[NonBrainImage]:
    """``per_kind`` images of each kind (photos: every sample photo in colour and grey, cropped ``per_kind`` ways)."""
    rng = np.random.default_rng(seed)
    makers = {
        "photo": _photos, "text": _text, "chart": _chart, "noise": _noise, "texture": _texture,
        "circuit board": _circuit_board, "chest radiograph": _chest_radiograph, "abdominal CT": _abdominal_ct,
        "knee MRI": _knee_mri, "limb cross-section": _limb_cross_section,
    }
    images = []
    for kind, make in makers.items():
        images += [NonBrainImage(kind, np.clip(image, 0, 1).astype(np.float32)) for image in make(per_kind, rng)]
    return images


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[-1:1:SIDE * 1j, -1:1:SIDE * 1j]


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma)


def _ellipse(y, x, cy, cx, ry, rx) -> np.ndarray:
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def _photos(count, rng):
    import matplotlib.cbook as cbook
    from PIL import Image

    images = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        with cbook.get_sample_data(name) as handle:
            photo = np.asarray(Image.open(handle).convert("RGB"), np.float32) / 255
        for _ in range(max(count // 3, 1)):
            h, w = photo.shape[:2]
            side = int(min(h, w) * rng.uniform(0.6, 1.0))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = np.asarray(Image.fromarray((photo[top:top + side, left:left + side] * 255).astype(np.uint8))
                              .resize((SIDE, SIDE)), np.float32) / 255
            images += [crop, crop @ np.array([0.299, 0.587, 0.114], np.float32)]
    return images


def _render(draw) -> np.ndarray:
    """Draw on a matplotlib figure (Agg) and return it as an RGB float image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(2.56, 2.56), dpi=100)
    draw(figure)
    figure.canvas.draw()
    rgb = np.asarray(figure.canvas.buffer_rgba(), np.float32)[..., :3] / 255
    plt.close(figure)
    return rgb


def _text(count, rng):
    words = ("def prepare(scan, spec):", "return tensor, box", "import numpy as np", "for i in range(10):",
             "Dear colleague,", "the results are", "attached below.", "x = model(batch)", "print(loss)")
    images = []
    for i in range(count):
        lines = [words[j] for j in rng.integers(0, len(words), 12)]
        dark = i % 2 == 1  # a light page, and a dark editor theme
        rgb = _render(lambda f: (f.patch.set_facecolor("#1e1e1e" if dark else "white"),
                                 f.text(0.02, 0.98, "\n".join(lines), va="top", family="monospace", fontsize=7,
                                        color="#d4d4d4" if dark else "black")))
        images.append(rgb.mean(axis=-1) if i % 3 == 0 else rgb)
    return images


def _chart(count, rng):
    images = []
    for i in range(count):
        values = rng.normal(size=(3, 20)).cumsum(axis=1)

        def draw(figure, i=i, values=values):
            axes = figure.add_subplot()
            if i % 3 == 0:
                axes.plot(values.T)
            elif i % 3 == 1:
                axes.bar(range(8), np.abs(values[0, :8]))
            else:
                axes.scatter(values[0], values[1], c=values[2])
        rgb = _render(draw)
        images.append(rgb.mean(axis=-1) if i % 2 else rgb)
    return images


def _noise(count, rng):
    images = []
    for i in range(count):
        white = rng.random((SIDE, SIDE))
        if i % 3 == 0:
            images.append(white)
        elif i % 3 == 1:
            cloud = _smooth(white, rng.uniform(3, 12))
            images.append((cloud - cloud.min()) / (np.ptp(cloud) + 1e-6))
        else:
            images.append(np.stack([_smooth(rng.random((SIDE, SIDE)), 6) for _ in range(3)], -1) * 2 - 0.5)
    return images


def _texture(count, rng):
    y, x = _grid()
    images = []
    for i in range(count):
        frequency = rng.uniform(4, 20)
        pattern = (i % 4)
        if pattern == 0:
            image = ((np.floor((x + 1) * frequency) + np.floor((y + 1) * frequency)) % 2).astype(float)
        elif pattern == 1:
            image = 0.5 + 0.5 * np.sin(frequency * (x * np.cos(i) + y * np.sin(i)))
        elif pattern == 2:
            image = (x + 1) / 2 * (y + 1) / 2
        else:
            image = 0.5 + 0.5 * np.sin(frequency * np.hypot(x, y))
        images.append(image)
    return images


def _circuit_board(count, rng):
    images = []
    for i in range(count):
        board = np.zeros((SIDE, SIDE, 3)) + np.array([0.05, 0.35, 0.12])
        for _ in range(40):  # copper traces
            r, c = rng.integers(0, SIDE, 2)
            length = rng.integers(20, 120)
            if rng.random() < 0.5:
                board[r:r + 3, c:c + length] = [0.8, 0.65, 0.3]
            else:
                board[r:r + length, c:c + 3] = [0.8, 0.65, 0.3]
        for _ in range(6):  # chips
            r, c = rng.integers(10, SIDE - 60, 2)
            board[r:r + rng.integers(20, 50), c:c + rng.integers(20, 50)] = 0.08
        images.append(board if i % 2 == 0 else board.mean(axis=-1) * 1.5)
    return images


def _chest_radiograph(count, rng):
    y, x = _grid()
    images = []
    for _ in range(count):
        body = _ellipse(y, x, 0.1, 0, 1.0, 0.85) * 0.55
        lungs = (_ellipse(y, x, -0.05, -0.38, 0.6, 0.26) | _ellipse(y, x, -0.05, 0.38, 0.6, 0.26))
        image = body - lungs * 0.4
        for k in range(8):  # ribs: bright arcs over the lungs
            image += 0.25 * (np.abs(y + 0.55 - 0.14 * k - 0.15 * x ** 2) < 0.02) * (np.abs(x) < 0.7)
        image += 0.35 * (np.abs(x) < 0.07) * (y > -0.7)  # spine
        image += 0.3 * _ellipse(y, x, 0.3, 0.12, 0.25, 0.2)  # heart
        images.append(_smooth(image, 2) + rng.normal(0, 0.02, image.shape))
    return images


def _abdominal_ct(count, rng):
    y, x = _grid()
    images = []
    for _ in range(count):
        image = _ellipse(y, x, 0, 0, 0.62, 0.92) * 0.45  # wide, flat body
        image += 0.15 * _ellipse(y, x, -0.1, -0.35, 0.3, 0.3)  # liver
        image += 0.1 * _ellipse(y, x, 0.1, 0.35, 0.15, 0.12)  # kidney
        image += 0.5 * (_ellipse(y, x, 0.42, 0, 0.12, 0.1) & ~_ellipse(y, x, 0.42, 0, 0.07, 0.06))  # vertebra
        for _ in range(5):  # bowel gas
            cy, cx = rng.uniform(-0.3, 0.3), rng.uniform(-0.5, 0.5)
            image -= 0.4 * _ellipse(y, x, cy, cx, 0.05, 0.06)
        images.append(_smooth(image, 1.5) + rng.normal(0, 0.02, image.shape))
    return images


def _knee_mri(count, rng):
    y, x = _grid()
    images = []
    for _ in range(count):
        femur = (np.abs(x - 0.05 * y) < 0.28) & (y < -0.05) | _ellipse(y, x, -0.1, 0, 0.18, 0.38)
        tibia = (np.abs(x) < 0.3) & (y > 0.12)
        image = 0.35 * ((np.abs(x) < 0.6) & (np.abs(y) < 0.95))  # soft tissue
        image += 0.4 * (femur | tibia)  # bright marrow on T1
        image -= 0.3 * (np.abs(y - 0.03) < 0.04) * (np.abs(x) < 0.35)  # joint space
        image += 0.3 * (np.abs(np.abs(x) - 0.62) < 0.03) * (np.abs(y) < 0.95)  # fat under the skin
        images.append(_smooth(image, 1.5) + rng.normal(0, 0.03, image.shape))
    return images


def _limb_cross_section(count, rng):
    y, x = _grid()
    images = []
    for _ in range(count):
        image = 0.35 * _ellipse(y, x, 0, 0, 0.75, 0.65)  # muscle
        image += 0.4 * (_ellipse(y, x, 0, 0, 0.75, 0.65) & ~_ellipse(y, x, 0, 0, 0.68, 0.58))  # fat
        bone = _ellipse(y, x, rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 0.18, 0.16)
        image = np.where(bone, 0.05, image)  # cortex is dark
        image += 0.5 * _ellipse(y, x, 0, 0, 0.1, 0.09) * bone  # marrow
        images.append(_smooth(image, 1.2) + rng.normal(0, 0.03, image.shape))
    return images
