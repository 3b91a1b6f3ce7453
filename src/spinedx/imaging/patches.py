"""Patch-based training and sliding-window inference on volumes.

Volumes are numpy arrays ``(channels, z, y, x)`` (one channel per sequence) or ``(z, y,
x)`` for masks, as in ``spinedx.imaging.components``. A patch of size ``s`` centred on voxel
``c`` covers ``[c - s // 2, c - s // 2 + s)`` per axis; parts outside the volume are filled
with ``pad_value``. A network's input region is its output window plus ``input_margin``
on each side (``spinedx.models.segmentation``: 0 for MONAI's U-Nets, > 0 for DeepMedic),
so that an input patch of ``output + 2 * margin`` and a label patch of ``output``
centred on the same voxel line up exactly.

Sampling (seeded): a fraction ``lesion_fraction`` of patch centres is drawn uniformly
among lesion voxels (so larger lesions are sampled more, as in DeepMedic's sampling of
the foreground class), the rest uniformly among the foreground (head) mask's voxels
(lesion voxels included); without lesion voxels every centre comes from the foreground.
With ``balance="lesion"`` the lesion centres are spread evenly over the lesions
(instance labels) instead, each centre on a uniformly drawn voxel of a uniformly drawn
lesion, so small lesions are not drowned by large ones.

Sliding-window inference uses MONAI's ``sliding_window_inference`` (window overlap,
"gaussian" or "constant" blending); for a network with a margin, each window's input
region is cut from the volume padded by the margin (with ``pad_value``), so the
probability map has the input's shape and voxel grid whatever the network.

numpy only at import; torch and MONAI are imported by the inference function.
"""

from __future__ import annotations


import numpy as np

from spinedx.errors import InputError

__all__ = [
    "extract_patch",
    "network_geometry",
    "sample_patch_centres",
    "sample_training_patches",
    "sliding_window_probability",
]

ACTIVATIONS: tuple = ("sigmoid", "softmax", None)
#: How lesion-centred patches are spread: over lesion voxels, or evenly over lesions.
BALANCES: tuple = ("voxel", "lesion")


def _sizes(size, name="size") -> tuple[int, int, int]:
    sizes = (int(size),) * 3 if np.isscalar(size) else tuple(int(s) for s in size)
    if len(sizes) != 3 or min(sizes) < 1:
        raise InputError(f"{name} must be one positive integer or three (z, y, x); got {size!r}")
    return sizes


def network_geometry(model) -> tuple[int, int]:
    """``(input_margin, size_divisor)`` of a network (0 and 1 when it does not say)."""
    return int(getattr(model, "input_margin", 0)), int(getattr(model, "size_divisor", 1))


# ---------------------------------------------------------------------------------------
# Sampling and patches
# ---------------------------------------------------------------------------------------


def sample_patch_centres(
    lesion_mask,
    foreground_mask,
    n: int,
    *,
    lesion_fraction: float,
    seed: int | np.random.Generator,
    balance: str = "voxel",
) -> np.ndarray:
    """``n`` patch centres ``(n, 3)`` (z, y, x), in random order: ``round(n *
    lesion_fraction)`` on lesion voxels (``lesion_mask != 0``), the rest on foreground
    voxels (``foreground_mask != 0``; None = the whole volume).

    ``balance``: "voxel" draws the lesion centres uniformly among all lesion voxels (a
    large lesion gets most of them, as in DeepMedic); "lesion" treats ``lesion_mask`` as
    instance labels and draws a lesion uniformly for each centre, then one of its voxels,
    so a 2 mm lesion is seen as often as a 15 mm one."""
    if balance not in BALANCES:
        raise InputError(f"balance must be one of {BALANCES}; got {balance!r}")
    lesion_mask = np.asarray(lesion_mask)
    if lesion_mask.ndim != 3:
        raise InputError(f"lesion mask must be 3D (z, y, x); got shape {lesion_mask.shape}")
    if foreground_mask is None:
        foreground_mask = np.ones(lesion_mask.shape, dtype=bool)
    foreground_mask = np.asarray(foreground_mask)
    if foreground_mask.shape != lesion_mask.shape:
        raise InputError(f"foreground mask shape {foreground_mask.shape} differs from lesion mask "
                         f"shape {lesion_mask.shape}")
    if not 0.0 <= lesion_fraction <= 1.0:
        raise InputError(f"lesion_fraction must be in [0, 1]; got {lesion_fraction!r}")
    if int(n) != n or n < 0:
        raise InputError(f"n must be a non-negative integer; got {n!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lesion_voxels = np.flatnonzero(lesion_mask)
    foreground_voxels = np.flatnonzero(foreground_mask)
    n_lesion = int(round(n * lesion_fraction)) if lesion_voxels.size else 0
    if n - n_lesion and not foreground_voxels.size:
        raise InputError("foreground mask is empty: no voxel to centre the non-lesion patches on; "
                         "pass a mask of the head (or None for the whole volume)")
    n_foreground = n - n_lesion
    if balance == "lesion" and n_lesion:
        values = lesion_mask.ravel()[lesion_voxels]
        order = np.argsort(values, kind="stable")
        instances, starts, counts = np.unique(values[order], return_index=True, return_counts=True)
        which = rng.integers(0, instances.size, n_lesion)
        lesion_centres = lesion_voxels[order[starts[which] + rng.integers(0, counts[which])]]
    else:
        lesion_centres = lesion_voxels[rng.integers(0, lesion_voxels.size, n_lesion)] if n_lesion \
            else np.zeros(0, np.int64)
    flat = np.concatenate([
        lesion_centres,
        foreground_voxels[rng.integers(0, foreground_voxels.size, n_foreground)] if n_foreground
        else np.zeros(0, np.int64),
    ])
    flat = flat[rng.permutation(flat.size)]
    return np.stack(np.unravel_index(flat, lesion_mask.shape), axis=1).astype(np.int64)


def extract_patch(volume, centre, size, *, pad_value: float = 0.0) -> np.ndarray:
    """The patch of ``size`` (z, y, x) centred on ``centre`` from a ``(z, y, x)`` or
    ``(channels, z, y, x)`` volume; outside the volume ``pad_value``."""
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise InputError(f"volume must be (z, y, x) or (channels, z, y, x); got shape {volume.shape}")
    size = _sizes(size)
    spatial = volume.shape[-3:]
    start = [int(c) - s // 2 for c, s in zip(centre, size)]
    patch = np.full(volume.shape[:-3] + size, pad_value, dtype=volume.dtype)
    source, target = [], []
    for a, s, n in zip(start, size, spatial):
        lo, hi = max(a, 0), min(a + s, n)
        if lo >= hi:
            return patch
        source.append(slice(lo, hi))
        target.append(slice(lo - a, hi - a))
    patch[(..., *target)] = volume[(..., *source)]
    return patch


def sample_training_patches(
    image,
    label,
    foreground_mask,
    n: int,
    *,
    output_size,
    input_margin: int = 0,
    lesion_fraction: float,
    seed: int | np.random.Generator,
    pad_value: float = 0.0,
    balance: str = "voxel",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` training pairs: image patches ``(n, channels, *(output_size + 2 *
    input_margin))`` and label patches ``(n, *output_size)`` centred on the same voxels
    (:func:`sample_patch_centres`, ``balance`` as there); returns ``(images, labels,
    centres)``."""
    image = np.asarray(image)
    if image.ndim != 4:
        raise InputError(f"image must be (channels, z, y, x); got shape {image.shape}")
    label = np.asarray(label)
    if label.shape != image.shape[1:]:
        raise InputError(f"label shape {label.shape} differs from image shape {image.shape[1:]}")
    output_size = _sizes(output_size, "output_size")
    input_size = tuple(s + 2 * int(input_margin) for s in output_size)
    centres = sample_patch_centres(label, foreground_mask, n, lesion_fraction=lesion_fraction, seed=seed,
                                   balance=balance)
    images = np.stack([extract_patch(image, c, input_size, pad_value=pad_value) for c in centres]) if n else \
        np.zeros((0, image.shape[0], *input_size), image.dtype)
    labels = np.stack([extract_patch(label, c, output_size) for c in centres]) if n else \
        np.zeros((0, *output_size), label.dtype)
    return images, labels, centres


# ---------------------------------------------------------------------------------------
# Sliding-window inference
# ---------------------------------------------------------------------------------------


def sliding_window_probability(
    volume,
    model,
    *,
    window,
    overlap: float = 0.5,
    blend: str = "gaussian",
    sw_batch_size: int = 1,
    device=None,
    activation: str | None = "sigmoid",
    pad_value: float = 0.0,
) -> np.ndarray:
    """Probability map of a whole ``(channels, z, y, x)`` volume from overlapping windows.

    ``window``: output window size (z, y, x), multiples of the network's
    ``size_divisor`` when it has a margin. ``blend``: "gaussian" or "constant".
    ``activation`` is applied to each window's logits before blending ("sigmoid",
    "softmax" over channels, or None). Returns float32 ``(z, y, x)`` for one output
    channel, else ``(channels, z, y, x)``, on the input's grid. The model is run in
    eval mode without gradients, its windows on ``device`` (default: the model's).
    """
    import torch
    import torch.nn.functional as F
    from monai.inferers import sliding_window_inference

    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
    if blend not in ("gaussian", "constant"):
        raise InputError(f"blend must be 'gaussian' or 'constant'; got {blend!r}")
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1); got {overlap!r}")
    x = torch.as_tensor(np.asarray(volume), dtype=torch.float32)
    if x.ndim != 4:
        raise InputError(f"volume must be (channels, z, y, x); got shape {tuple(x.shape)}")
    x = x[None]
    window = _sizes(window, "window")
    margin, divisor = network_geometry(model)
    if margin and any(w % divisor for w in window):
        raise InputError(f"window {window} must be a multiple of {divisor} for this network")
    if device is None:
        parameter = next(iter(model.parameters()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")

    def activate(logits):
        if activation == "sigmoid":
            return torch.sigmoid(logits)
        if activation == "softmax":
            return torch.softmax(logits, dim=1)
        return logits

    shape = tuple(x.shape[2:])
    # Pad to at least one window here (MONAI would do the same, centred) so that window
    # coordinates below refer to the array the margins are added to.
    grow = [max(w - s, 0) for w, s in zip(window, shape)]
    before = [g // 2 for g in grow]
    pad = [p for g, b in zip(reversed(grow), reversed(before)) for p in (b, g - b)]
    x = F.pad(x, pad, value=pad_value) if any(grow) else x

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if margin == 0:
                out = sliding_window_inference(
                    x, window, sw_batch_size, lambda w: activate(model(w)), overlap=overlap,
                    mode=blend, sw_device=device, device="cpu")
            else:
                padded = F.pad(x, [margin] * 6, value=pad_value)

                def predictor(_, coordinates):
                    # each window's region: its slices widened by the margin on both sides,
                    # which in the margin-padded array start at the same index
                    regions = [padded[(c[0], slice(None), *(slice(s.start, s.stop + 2 * margin) for s in c[2:]))]
                               for c in coordinates]
                    return activate(model(torch.cat(regions).to(device)))

                out = sliding_window_inference(
                    x, window, sw_batch_size, predictor, overlap=overlap, mode=blend,
                    sw_device=device, device="cpu", with_coord=True)
    finally:
        model.train(was_training)
    out = out[(0, slice(None), *(slice(b, b + s) for b, s in zip(before, shape)))]
    out = out.float().numpy()
    return out[0] if out.shape[0] == 1 else out
