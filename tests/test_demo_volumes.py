"""Tests of the two volume demo studies (spinedx.demo.vertebral_ct, spinedx.demo.brain_mets):
settings from the schema snippet, determinism to the byte, planned == written files,
geometry of images and masks, the fractured body mask, lesion counts, sizes and spacing,
and vessel distractors bright on bright blood and suppressed on black blood."""

from __future__ import annotations

import gzip
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage

from conftest import tree_hash
from spinedx.demo import brain_mets, vertebral_ct

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="demo_volumes")

REPO = Path(__file__).resolve().parents[1]
SNIPPETS = yaml.safe_load((REPO / "docs" / "demo_schema_snippets_3d.yaml").read_text())


def defaults(section: str) -> dict:
    return {key: spec["default"] for key, spec in SNIPPETS[section]["properties"].items() if key != "enabled"}


CT_DEFAULTS = defaults("demo_vertebral_ct")
BRAIN_DEFAULTS = defaults("demo_brain_mets")
CT_SMALL = {**CT_DEFAULTS, "seed": 11, "n_internal": {"malignant": 2, "osteoporotic": 2},
            "n_external": {"malignant": 1, "osteoporotic": 1}}
BRAIN_SMALL = {**BRAIN_DEFAULTS, "seed": 13, "n_internal": 4, "n_external": 2}


def _written(images: Path) -> set[str]:
    return {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def ct_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    cases = vertebral_ct.generate_demo_cohort(root / "images", root / "cases.csv", CT_SMALL)
    return root, cases


@pytest.fixture(scope="module")
def brain_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("brain")
    cases = brain_mets.generate_demo_cohort(root / "images", root / "cases.csv", BRAIN_SMALL)
    return root, cases


# --- both studies ------------------------------------------------------------------------------


@pytest.mark.parametrize("module, section", [(vertebral_ct, "demo_vertebral_ct"), (brain_mets, "demo_brain_mets")])
def test_schema_snippet_holds_every_setting_and_its_defaults_validate(module, section):
    schema = SNIPPETS[section]
    assert set(schema["properties"]) - {"enabled"} == set(module.SETTING_KEYS)
    assert all("default" in spec and "description" in spec for spec in schema["properties"].values())
    jsonschema.validate({**defaults(section), "enabled": True}, schema)
    module._checked(defaults(section))


@pytest.mark.parametrize("module, settings", [(vertebral_ct, CT_DEFAULTS), (brain_mets, BRAIN_DEFAULTS)])
def test_settings_must_be_complete_and_sane(module, settings, tmp_path):
    # Defaults live only in the schema: a missing key is an error naming it.
    partial = {k: v for k, v in settings.items() if k != "field_of_view_mm"}
    with pytest.raises(ValueError, match="field_of_view_mm"):
        module.planned_files(partial)
    with pytest.raises(ValueError, match="slice_thickness_mm"):
        module.generate_demo_cohort(tmp_path / "i", tmp_path / "c.csv", {**settings, "slice_thickness_mm": [3, 2]})
    assert not (tmp_path / "i").exists()


def test_bad_names_and_counts_are_refused():
    for bad in ("../CT", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="sequence"):
            vertebral_ct.planned_files({**CT_DEFAULTS, "sequence": bad})
    with pytest.raises(ValueError, match="n_internal"):
        vertebral_ct.planned_files({**CT_DEFAULTS, "n_internal": {"benign": 3}})
    for sequences in ({"black_blood": "BB", "bright_blood": "BB"}, {"black_blood": "BB", "bright_blood": "lesions"},
                      {"black_blood": "BB"}, {"black_blood": "BB", "bright_blood": "../DB"}):
        with pytest.raises(ValueError, match="sequences"):
            brain_mets.planned_files({**BRAIN_DEFAULTS, "sequences": sequences})
    with pytest.raises(ValueError, match="lesions_per_case"):
        brain_mets.planned_files({**BRAIN_DEFAULTS, "lesions_per_case": [3, 1]})


@pytest.mark.parametrize("module, settings, fixture", [(vertebral_ct, CT_SMALL, "ct_cohort"),
                                                       (brain_mets, BRAIN_SMALL, "brain_cohort")])
def test_planned_files_are_exactly_the_files_written(module, settings, fixture, request):
    root, _ = request.getfixturevalue(fixture)
    planned = module.planned_files(settings)
    flat = [f for files in planned.values() for f in files]
    assert len(flat) == len(set(flat))
    assert set(flat) == _written(root / "images")


def test_planned_files_layout():
    planned = vertebral_ct.planned_files(CT_SMALL)
    assert list(planned) == ["CT"]
    assert planned["CT"][:2] == ["DEMO-I001/CT/image.nii.gz", "DEMO-I001/CT/mask.nii.gz"]
    assert planned["CT"][-1] == "DEMO-E002/CT/mask.nii.gz"
    renamed = {"black_blood": "VISIBLE_BB", "bright_blood": "VISIBLE_DB"}
    planned = brain_mets.planned_files({**BRAIN_SMALL, "sequences": renamed})
    assert list(planned) == ["VISIBLE_BB", "VISIBLE_DB", "lesions"]
    assert planned["VISIBLE_DB"][0] == "DEMO-I001/VISIBLE_DB/image.nii.gz"
    assert planned["lesions"] == [f"DEMO-I00{k}/lesions.nii.gz" for k in range(1, 5)] + [
        f"DEMO-E00{k}/lesions.nii.gz" for k in (1, 2)]


@pytest.mark.parametrize("module, small", [
    (vertebral_ct, {**CT_SMALL, "n_internal": {"malignant": 1, "osteoporotic": 0},
                    "n_external": {"malignant": 0, "osteoporotic": 1}}),
    (brain_mets, {**BRAIN_SMALL, "n_internal": 1, "n_external": 1}),
])
def test_same_settings_give_identical_bytes_and_another_seed_differs(module, small, tmp_path):
    hashes = []
    for name, seed in (("a", small["seed"]), ("b", small["seed"]), ("c", small["seed"] + 1)):
        module.generate_demo_cohort(tmp_path / name / "images", tmp_path / name / "cases.csv", {**small, "seed": seed})
        hashes.append(tree_hash(tmp_path / name))
    assert hashes[0] == hashes[1] != hashes[2]
    # The gzip headers carry no time stamp and no file name.
    for path in (tmp_path / "a").rglob("*.nii.gz"):
        header = path.read_bytes()[:10]
        assert header[:3] == b"\x1f\x8b\x08" and header[3] == 0 and header[4:8] == b"\0\0\0\0"
        assert gzip.decompress(path.read_bytes())[:4] == (348).to_bytes(4, "little")  # NIfTI-1 header


@pytest.mark.parametrize("module, settings", [(vertebral_ct, CT_SMALL), (brain_mets, BRAIN_SMALL)])
def test_rerun_replaces_an_earlier_demo_but_nothing_else(module, settings, tmp_path):
    images = tmp_path / "images"
    (images / "DEMO-I099").mkdir(parents=True)
    (images / "DEMO-I099" / "stale.nii.gz").write_bytes(b"old")
    (images / "my_notes").mkdir()
    (images / "my_notes" / "keep.txt").write_text("keep me")
    fewer = {**settings, "n_internal": {"malignant": 1, "osteoporotic": 0} if module is vertebral_ct else 1,
             "n_external": {"malignant": 0, "osteoporotic": 0} if module is vertebral_ct else 0}
    module.generate_demo_cohort(images, tmp_path / "cases.csv", fewer)
    assert {p.name for p in images.iterdir()} == {"DEMO-I001", "my_notes"}
    assert (images / "my_notes" / "keep.txt").read_text() == "keep me"


def _check_geometry(paths, in_plane_range, thickness_range) -> tuple:
    """Images of one patient share shape and affine; sform = qform (code 1), mm, spacing in range."""
    loaded = [nib.load(p) for p in paths]
    first = loaded[0]
    for image in loaded:
        assert image.shape == first.shape and len(image.shape) == 3
        np.testing.assert_array_equal(image.affine, first.affine)
        sform, sform_code = image.header.get_sform(coded=True)
        qform, qform_code = image.header.get_qform(coded=True)
        assert sform_code == 1 and qform_code == 1
        np.testing.assert_allclose(qform, sform, atol=1e-4)
        assert image.header.get_xyzt_units()[0] == "mm"
    affine = first.affine
    assert np.count_nonzero(affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))) == 0  # axis-aligned
    spacing = np.abs(np.diag(affine[:3, :3]))
    assert in_plane_range[0] - 1e-6 <= spacing[0] == spacing[1] <= in_plane_range[1] + 1e-6
    assert thickness_range[0] - 1e-6 <= spacing[2] <= thickness_range[1] + 1e-6
    order = "".join(nib.aff2axcodes(affine))
    assert order in {"RAS", "LPS"}
    return order, spacing


def test_scanner_parks_mix_storage_orders_and_anisotropic_spacing():
    for module, settings in ((vertebral_ct, CT_DEFAULTS), (brain_mets, BRAIN_DEFAULTS)):
        patients = module._plan_cohort(settings)
        assert {p.scanner.storage for p in patients} == {"RAS", "LPS"}
        spacings = {p.grid.spacing for p in patients}
        assert len(spacings) >= 4
        assert any(abs(s[2] - s[0]) > 0.3 for s in spacings)  # anisotropic scanners exist
        internal = {p.scanner.name for p in patients if p.cohort == "internal"}
        external = {p.scanner.name for p in patients if p.cohort == "external"}
        assert external - internal  # the external cohort meets scanners the internal one never saw


# --- vertebral CT ------------------------------------------------------------------------------


def test_ct_cases_table(ct_cohort):
    root, returned = ct_cohort
    cases = pd.read_csv(root / "cases.csv")
    pd.testing.assert_frame_equal(cases, returned)
    assert list(cases.columns) == ["patient_id", "diagnosis", "cohort", "age", "sex", "level", "scanner", "vendor",
                                   "kvp", "kernel"]
    assert cases["patient_id"].is_unique
    for cohort, key, prefix in (("internal", "n_internal", "DEMO-I"), ("external", "n_external", "DEMO-E")):
        part = cases[cases["cohort"] == cohort]
        assert part["diagnosis"].value_counts().to_dict() == CT_SMALL[key]
        assert part["patient_id"].str.fullmatch(prefix + r"\d{3}").all()
    assert set(cases["sex"]) <= {"F", "M"} and cases["age"].between(35, 95).all()
    assert set(cases["level"]) <= {"T12", "L1", "L2", "L3", "L4"}
    assert set(cases["kvp"]) <= {100, 120, 140} and set(cases["kernel"]) <= {"standard", "bone"}


def test_ct_volumes_geometry_and_intensities(ct_cohort):
    root, cases = ct_cohort
    for patient_id in cases["patient_id"]:
        folder = root / "images" / patient_id / "CT"
        _check_geometry([folder / "image.nii.gz", folder / "mask.nii.gz"], CT_SMALL["in_plane_spacing_mm"],
                        CT_SMALL["slice_thickness_mm"])
        image, mask = nib.load(folder / "image.nii.gz"), nib.load(folder / "mask.nii.gz")
        assert image.get_data_dtype() == np.int16 and mask.get_data_dtype() == np.uint8
        hu = np.asarray(image.dataobj)
        assert -1024 <= hu.min() and hu.max() <= 3071
        assert np.percentile(hu, 99.5) > 300  # cortical bone
        assert set(np.unique(np.asarray(mask.dataobj))) == {0, 1}
        # Field of view: close to the configured size on every axis.
        extent = np.array(image.shape) * np.abs(np.diag(image.affine[:3, :3]))
        np.testing.assert_allclose(extent, [CT_SMALL["field_of_view_mm"][i] for i in (2, 1, 0)], atol=3.0)


def test_ct_mask_is_the_fractured_body(ct_cohort):
    root, cases = ct_cohort
    patients = {p.patient_id: p for p in vertebral_ct._plan_cohort(CT_SMALL)}
    for patient_id in cases["patient_id"]:
        patient = patients[patient_id]
        level = patient.levels[patient.fracture.level]
        image = nib.load(root / "images" / patient_id / "CT" / "image.nii.gz")
        mask_image = nib.load(root / "images" / patient_id / "CT" / "mask.nii.gz")
        mask = np.asarray(mask_image.dataobj) > 0
        labels, n = ndimage.label(mask)
        assert n == 1  # one body
        voxels = np.argwhere(mask)
        world = voxels @ mask_image.affine[:3, :3].T + mask_image.affine[:3, 3]
        # In the body's own frame (from the plan, moved to scanner coordinates) ...
        body = world - np.asarray(patient.translation)
        u, v, w = patient_frame_coordinates(level.frame, body)
        spacing = np.abs(np.diag(mask_image.affine[:3, :3]))
        margin = spacing.max()
        # ... the mask lies within the body's outline (fragment and convex border included) ...
        assert np.abs(u).max() <= level.half_width + margin
        assert v.max() <= level.half_depth + margin
        assert v.min() >= -level.half_depth - max(patient.fracture.posterior_bulge, 0) - 6.0 - margin
        assert np.abs(w).max() <= level.height / 2 + margin
        # ... and fills most of it: a collapsed body keeps at least half its volume.
        volume = mask.sum() * np.prod(spacing)
        nominal = np.pi * level.half_width * level.half_depth * level.height
        assert 0.35 * nominal < volume < 1.2 * nominal, (patient_id, volume, nominal)
        # The neighbouring bodies are outside the mask, and the body is bone: its voxels are
        # denser than the soft tissue around the spine on average.
        hu = np.asarray(image.dataobj)
        assert hu[mask].mean() > 60


def patient_frame_coordinates(frame, points: np.ndarray):
    offsets = points - np.asarray(frame.centre)
    return tuple(offsets @ np.asarray(axis) for axis in frame.axes)


def test_ct_rendered_signs_follow_the_class():
    """A typical malignant body has lytic (soft-tissue) voxels an osteoporotic one lacks, and
    the osteoporotic impaction band is denser than the malignant body's marrow."""
    patients = vertebral_ct._plan_cohort({**CT_DEFAULTS, "n_external": {"malignant": 0, "osteoporotic": 0}})
    malignant = next(p for p in patients if p.diagnosis == "malignant" and not p.atypical
                     and len(p.fracture.lytic_foci) >= 4)
    osteoporotic = next(p for p in patients if p.diagnosis == "osteoporotic" and not p.atypical
                        and p.fracture.band is not None and p.fracture.vacuum is None)
    shares = {}
    for patient in (malignant, osteoporotic):
        image, mask, _, _ = vertebral_ct.render_patient(patient)
        interior = ndimage.binary_erosion(mask > 0)
        shares[patient.diagnosis] = (np.mean(image[interior] < 60), np.mean(image[interior] > 300))
    assert shares["malignant"][0] > shares["osteoporotic"][0] + 0.1
    assert shares["osteoporotic"][1] > shares["malignant"][1]


def test_ct_classes_and_overlap_in_the_plan():
    big = {**CT_DEFAULTS, "n_internal": {"malignant": 300, "osteoporotic": 300},
           "n_external": {"malignant": 0, "osteoporotic": 0}}
    patients = vertebral_ct._plan_cohort(big)
    by = {d: [p for p in patients if p.diagnosis == d] for d in vertebral_ct.DIAGNOSES}
    malignant, osteoporotic = by["malignant"], by["osteoporotic"]

    def share(group, test):
        return np.mean([bool(test(p)) for p in group])

    assert np.mean([p.age for p in osteoporotic]) - np.mean([p.age for p in malignant]) > 6
    assert share(osteoporotic, lambda p: p.sex == "F") > share(malignant, lambda p: p.sex == "F") + 0.2
    assert np.mean([p.trabecular_hu for p in malignant]) - np.mean([p.trabecular_hu for p in osteoporotic]) > 25
    assert share(malignant, lambda p: p.fracture.lytic_foci) > 0.75 > share(
        osteoporotic, lambda p: p.fracture.lytic_foci)
    assert share(malignant, lambda p: p.fracture.pedicle_lysis) > 0.5 > 0.15 > share(
        osteoporotic, lambda p: p.fracture.pedicle_lysis)
    assert share(malignant, lambda p: p.fracture.masses) > 0.6 > 0.15 > share(osteoporotic, lambda p: p.fracture.masses)
    assert share(malignant, lambda p: p.fracture.posterior_bulge > 0) > 0.5 > 0.15 > share(
        osteoporotic, lambda p: p.fracture.posterior_bulge > 0)
    assert share(osteoporotic, lambda p: p.fracture.band) > 0.6 > 0.15 > share(malignant, lambda p: p.fracture.band)
    assert share(osteoporotic, lambda p: p.fracture.fragment) > 0.3 > 0.15 > share(
        malignant, lambda p: p.fracture.fragment)
    # Overlap: about atypical_share of the patients borrow one or two feature groups.
    atypical = share(patients, lambda p: p.atypical)
    assert abs(atypical - CT_DEFAULTS["atypical_share"]) < 0.05
    assert {len(p.atypical) for p in patients} == {0, 1, 2}
    # Identifier order does not give the diagnosis away.
    first_half = [p.diagnosis for p in patients[:300]]
    assert 0.4 < first_half.count("malignant") / 300 < 0.6


# --- brain metastases --------------------------------------------------------------------------


def _read_case(root: Path, patient_id: str, settings: dict):
    folder = root / "images" / patient_id
    paths = [folder / settings["sequences"][role] / "image.nii.gz" for role in brain_mets.ROLES]
    return paths, folder / "lesions.nii.gz"


def test_brain_cases_table_and_label_volumes(brain_cohort):
    root, returned = brain_cohort
    cases = pd.read_csv(root / "cases.csv")
    pd.testing.assert_frame_equal(cases, returned)
    assert list(cases.columns) == ["patient_id", "cohort", "n_lesions", "age", "sex", "scanner", "vendor",
                                   "field_strength_t"]
    assert cases["cohort"].value_counts().to_dict() == {"internal": 4, "external": 2}
    for case in cases.itertuples():
        images, lesions = _read_case(root, case.patient_id, BRAIN_SMALL)
        _check_geometry([*images, lesions], BRAIN_SMALL["in_plane_spacing_mm"], BRAIN_SMALL["slice_thickness_mm"])
        assert all(nib.load(p).get_data_dtype() == np.int16 for p in images)
        labels = np.asarray(nib.load(lesions).dataobj)
        assert labels.dtype == np.uint8
        # Labels are exactly 1..K with K = n_lesions (0 lesions: an all-zero volume).
        assert set(np.unique(labels)) - {0} == set(range(1, case.n_lesions + 1))
        assert 0 <= case.n_lesions <= 6


def test_brain_lesions_are_where_planned_and_apart(brain_cohort):
    root, cases = brain_cohort
    patients = {p.patient_id: p for p in brain_mets._plan_cohort(BRAIN_SMALL)}
    n_checked = 0
    for case in cases.itertuples():
        patient = patients[case.patient_id]
        images, lesions = _read_case(root, case.patient_id, BRAIN_SMALL)
        label_image = nib.load(lesions)
        labels = np.asarray(label_image.dataobj)
        spacing = np.abs(np.diag(label_image.affine[:3, :3]))
        for number, lesion in enumerate(patient.lesions, start=1):
            voxels = np.argwhere(labels == number)
            centre = voxels.mean(axis=0) @ label_image.affine[:3, :3].T + label_image.affine[:3, 3]
            assert np.linalg.norm(centre - np.add(lesion.centre, patient.translation)) <= np.linalg.norm(spacing)
            volume = len(voxels) * np.prod(spacing)
            if lesion.diameter >= 6:  # large enough for the voxel count to measure it
                measured = np.cbrt(6 * volume / np.pi)
                assert abs(measured - lesion.diameter) / lesion.diameter < 0.35
            # No other label within one voxel (26-neighbourhood): lesions never touch.
            grown = ndimage.binary_dilation(labels == number, structure=np.ones((3, 3, 3), bool))
            assert set(np.unique(labels[grown])) <= {0, number}
            n_checked += 1
    assert n_checked >= 5


def test_brain_lesion_counts_and_size_bands():
    big = {**BRAIN_DEFAULTS, "n_internal": 200, "n_external": 0}
    patients = brain_mets._plan_cohort(big)
    counts = np.array([len(p.lesions) for p in patients])
    assert set(counts) == set(range(0, 7))
    assert 2.0 < counts.mean() < 3.0
    assert np.mean(counts == 0) > 0.08 and np.mean(counts == 6) > 0.03
    diameters = np.array([lesion.diameter for p in patients for lesion in p.lesions])
    assert 2.0 <= diameters.min() and diameters.max() <= 15.0
    # Log-uniform over 2-15 mm: <5, 5-10 and >10 mm in about 0.46 : 0.34 : 0.20.
    bands = [np.mean(diameters < 5), np.mean((diameters >= 5) & (diameters < 10)), np.mean(diameters >= 10)]
    np.testing.assert_allclose(bands, [np.log(2.5) / np.log(7.5), np.log(2) / np.log(7.5), np.log(1.5) / np.log(7.5)],
                               atol=0.05)
    # The default cohort itself has every band, ring and solid lesions, and oedema.
    default = [lesion for p in brain_mets._plan_cohort(BRAIN_DEFAULTS) for lesion in p.lesions]
    for low, high in ((0, 5), (5, 10), (10, 99)):
        assert sum(low <= lesion.diameter < high for lesion in default) >= 5
    assert any(lesion.ring for lesion in default) and any(not lesion.ring for lesion in default)
    assert any(lesion.oedema for lesion in default)
    # Every lesion lies in the brain, outside the ventricles, apart from every other lesion.
    for patient in patients[:100]:
        for k, lesion in enumerate(patient.lesions):
            centre = np.asarray(lesion.centre)
            offset = (centre - np.asarray(patient.brain_centre)) / np.asarray(patient.brain)
            assert np.sqrt(np.sum(offset ** 2)) < 0.93
            for ventricle, radii in patient.ventricles:
                assert np.sqrt(np.sum(((centre - ventricle) / (np.asarray(radii) + lesion.diameter / 2)) ** 2)) >= 1
            for other in patient.lesions[k + 1:]:
                assert np.linalg.norm(centre - np.asarray(other.centre)) > (lesion.diameter + other.diameter) / 2


def _centreline_mean(image: nib.Nifti1Image, points_world: np.ndarray) -> float:
    index = np.linalg.solve(image.affine[:3, :3], (points_world - image.affine[:3, 3]).T)
    inside = np.all((index >= 0) & (index <= np.array(image.shape)[:, None] - 1), axis=0)
    if not inside.any():
        return float("nan")
    return float(ndimage.map_coordinates(np.asarray(image.dataobj, np.float32), index[:, inside], order=1).mean())


def _brain_median(image: nib.Nifti1Image, patient) -> float:
    """Median of the voxels in the inner brain (from the plan's brain ellipsoid)."""
    shape = image.shape
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = index @ image.affine[:3, :3].T + image.affine[:3, 3] - np.asarray(patient.translation)
    rho = np.sqrt(np.sum(((world - np.asarray(patient.brain_centre)) / np.asarray(patient.brain)) ** 2, axis=1))
    return float(np.median(np.asarray(image.dataobj).reshape(-1)[rho < 0.8]))


def test_vessels_are_bright_on_bright_blood_and_suppressed_on_black_blood(brain_cohort):
    root, cases = brain_cohort
    patients = {p.patient_id: p for p in brain_mets._plan_cohort(BRAIN_SMALL)}
    for case in cases.itertuples():
        patient = patients[case.patient_id]
        paths, lesions = _read_case(root, case.patient_id, BRAIN_SMALL)
        images = dict(zip(brain_mets.ROLES, (nib.load(p) for p in paths)))
        medians = {role: _brain_median(image, patient) for role, image in images.items()}
        ratios = {role: [] for role in brain_mets.ROLES}
        kinds = set()
        for vessel in patient.vessels:
            if min(radius for *_, radius in vessel.segments) < 0.8 or vessel.kind == "sinus":
                continue
            points = []
            for start, end, _ in vessel.segments:
                start, end = np.asarray(start), np.asarray(end)
                points += [start + (end - start) * t for t in np.linspace(0, 1, 8, endpoint=False)]
            world = np.asarray(points) + np.asarray(patient.translation)
            values = {role: _centreline_mean(images[role], world) / medians[role] for role in brain_mets.ROLES}
            if all(np.isfinite(v) for v in values.values()):
                kinds.add(vessel.kind)
                for role, value in values.items():
                    ratios[role].append(value)
        bright, black = np.array(ratios["bright_blood"]), np.array(ratios["black_blood"])
        assert len(bright) >= 5 and {"artery", "cortical_vein"} <= kinds  # tubular, branching, in the slab
        # Bright above the brain on bright blood, below it on black blood (partial volume
        # keeps thin vessels from reaching either extreme), vessel by vessel.
        assert bright.mean() > 1.1 and black.mean() < 1.0, (case.patient_id, bright.mean(), black.mean())
        assert np.mean(bright / black) > 1.4 and np.mean(bright > black) > 0.95
        # Lesions (>= 5 mm) are bright on both sequences.
        labels = np.asarray(nib.load(lesions).dataobj)
        for number, lesion in enumerate(patient.lesions, start=1):
            if lesion.diameter >= 5 and not lesion.ring:
                for role, image in images.items():
                    assert np.asarray(image.dataobj)[labels == number].mean() > 1.3 * medians[role]
