"""One figure style for every figure of the study (meta_analysis, figures, gradcam).

Colour-blind-safe palette (Okabe & Ito 2008, seaborn's "colorblind"), sizes for a
journal column (3.5 in) or page (7.2 in) at print size with 8-9 pt text, and one saver
that writes the PDF for print and the PNG for screens side by side, atomically.
"""

from __future__ import annotations

from pathlib import Path

from spinedx.io import atomic_output

#: Okabe-Ito colours, distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: Figure widths in inches: one journal column, one full page width.
COLUMN_WIDTH = 3.5
PAGE_WIDTH = 7.2
#: Sequential colour map for heat maps (perceptually uniform, readable in grey).
HEATMAP_CMAP = "inferno"
PNG_DPI = 200

STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.9",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.4,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,  # embed TrueType: text stays text (searchable, editable) in the PDF
}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend with the study style applied."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    plt.rcParams.update(STYLE)
    plt.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)
    return plt


def colors(names) -> dict:
    """A stable colour per name (in the given order), from :data:`PALETTE`."""
    names = list(names)
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def save_figure(fig, stem: str | Path, close: bool = True) -> list[Path]:
    """``<stem>.pdf`` and ``<stem>.png``; each written to a temporary name, then renamed,
    so an interrupted job never leaves a truncated figure that looks finished."""
    stem = Path(stem)
    paths = []
    for suffix, options in ((".pdf", {}), (".png", {"dpi": PNG_DPI})):
        path = stem.with_name(stem.name + suffix)
        with atomic_output(path) as partial:
            # "tight" keeps figure-level legends inside the saved image.
            fig.savefig(partial, format=suffix[1:], bbox_inches="tight", **options)
        paths.append(path)
    if close:
        import matplotlib.pyplot as plt
        plt.close(fig)
    return paths


# --- ROC curves (figures, reader study) ---------------------------------------------------

ROC_AXIS_X = "1 − specificity (false-positive rate)"


def roc_axis(ax, positive: str) -> None:
    """Square ROC axes with the chance diagonal; ``positive`` names the positive class."""
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", zorder=0)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_xlabel(ROC_AXIS_X)
    ax.set_ylabel(f"Sensitivity ({positive} positive)")


def roc_points(labels, probs):
    """(false-positive rate, true-positive rate) of every threshold, label 1 positive."""
    import numpy as np
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return np.array([np.nan]), np.array([np.nan])
    fpr, tpr, _ = roc_curve(labels, np.asarray(probs, dtype=float), pos_label=1, drop_intermediate=False)
    return fpr, tpr
