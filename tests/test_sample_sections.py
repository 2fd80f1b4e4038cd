"""pyquint.sample_sections: realistic RGB sections whose annotations agree with the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage as ndi

from pyquint.cli import main
from pyquint.io import read_image
from pyquint.sample_sections import make_dab_section, make_fluorescence_section


@pytest.fixture(scope="module")
def dab():
    return make_dab_section(2, (320, 416))


@pytest.fixture(scope="module")
def fluo():
    return make_fluorescence_section(2, (320, 416))


def _od(image: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(image.astype(np.float64), 1, 255) / 250.0)


def test_same_seed_same_section():
    a, b = make_dab_section(4, (200, 240)), make_dab_section(4, (200, 240))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.object_labels, b.object_labels)
    assert not np.array_equal(a.image, make_dab_section(5, (200, 240)).image)
    with pytest.raises(ValueError, match="too small"):
        make_dab_section(0, (100, 300))


def test_dab_colours_sizes_and_density(dab):
    image, truth = dab.image, dab.truth
    assert image.dtype == np.uint8 and image.shape == truth.shape + (3,)
    od = _od(image)
    cells, slide = truth == 1, ~dab.tissue & (truth == 0)
    # slide bright and neutral; cells brown (DAB absorbs blue most), tissue blue-ish (haematoxylin)
    assert image[slide].mean() > 225
    cell_core = ndi.binary_erosion(cells)
    assert od[cell_core][:, 2].mean() > od[cell_core][:, 0].mean() + 0.15
    unstained = dab.tissue & (truth == 0)
    assert od[unstained][:, 1].mean() > od[unstained][:, 2].mean()  # haematoxylin: green > blue OD
    # cells 3-8 px across, a realistic density (1-4 per 1000 tissue pixels)
    lab, n = ndi.label(cells)
    extents = [max(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in ndi.find_objects(lab)]
    assert n == dab.n_cells and 3 <= min(extents) and max(extents) <= 9
    assert 1.0 <= 1000 * n / dab.tissue.sum() <= 4.0
    # a brain-shaped mask: one piece of tissue with holes (ventricles), less than the frame
    pieces, n_pieces = ndi.label(dab.tissue)
    assert n_pieces == 1 and 0.35 < dab.tissue.mean() < 0.85
    assert (ndi.binary_fill_holes(dab.tissue) & ~dab.tissue).sum() > 100


def test_dab_artefacts_as_brown_as_cells(dab):
    od = _od(dab.image)
    art = dab.truth == 2
    assert art.sum() > 200
    brown_art = art & (od[..., 2] > 0.5)  # edge staining / vessels / fold
    assert brown_art.sum() > 50
    cells = ndi.binary_erosion(dab.truth == 1)
    assert abs(np.median(od[brown_art][:, 2]) - np.median(od[cells][:, 2])) < 0.35


@pytest.mark.parametrize("name", ["dab", "fluo"])
def test_annotations_consistent(name, request):
    s = request.getfixturevalue(name)
    assert set(np.unique(s.labels)) == {0, 1, 2} and set(np.unique(s.object_labels)) == {0, 1, 2}
    assert np.all(s.truth[s.labels == 1] == 0)
    assert np.all(s.truth[s.labels == 2] > 0)
    assert np.all(s.truth[s.object_labels == 1] == 1)
    assert np.all(s.truth[s.object_labels == 2] == 2)


def test_fluorescence_cells_green_artefacts_white(fluo):
    img = fluo.image.astype(np.float64)
    cells = ndi.binary_erosion(fluo.truth == 1)
    assert img[cells][:, 1].mean() > img[cells][:, 0].mean() + 80
    background = ~fluo.tissue & (fluo.truth == 0)
    assert img[background].mean() < 20
    art = fluo.truth == 2
    bright = art & (img.min(axis=-1) > 80)
    assert bright.sum() > 50  # glows in every channel


def test_cli_sample_default_is_dab(tmp_path):
    res = CliRunner().invoke(main, ["data", "sample", "-o", str(tmp_path), "-n", "1", "--size", "200", "240"])
    assert res.exit_code == 0, res.output
    img, _ = read_image(tmp_path / "sections" / "brain_s001.png")
    np.testing.assert_array_equal(img, make_dab_section(0, (200, 240)).image)
    res = CliRunner().invoke(main, ["data", "sample", "-o", str(tmp_path / "x"), "--size", "50", "50"])
    assert res.exit_code == 2 and "too small" in res.output
