"""pyquint.data: deterministic synthetic sections with consistent annotations."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage as ndi

from pyquint.cli import main
from pyquint.data import make_section, write_rgb_sample_dataset
from pyquint.io import read_image


def test_same_seed_same_section_and_different_seed_differs():
    a, b, c = make_section(3), make_section(3), make_section(4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_annotations_are_consistent_with_the_image():
    s = make_section(1)
    assert s.image.dtype == np.uint8 and s.truth.shape == s.image.shape
    cells = s.truth == 1
    streaks = s.truth == 2
    unstained = s.truth == 0
    # stain is dark, and cells and streaks are equally dark (only shape separates them)
    assert s.image[cells].mean() < s.image[unstained].mean() - 60
    assert abs(np.median(s.image[cells]) - np.median(s.image[streaks])) < 15
    # labels: 2 only on stain, 1 only off stain
    assert np.all(s.truth[s.labels == 2] > 0)
    assert np.all(s.truth[s.labels == 1] == 0)
    # streaks are long and thin, cells compact
    lab, n = ndi.label(streaks)
    sizes = ndi.sum(streaks, lab, range(1, n + 1))
    extents = [max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) for sl in ndi.find_objects(lab)]
    assert max(extents) > 30
    cell_lab, n_cells = ndi.label(cells)
    assert n_cells == len(s.cell_centres) >= 20
    cell_extents = [max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) for sl in ndi.find_objects(cell_lab)]
    assert max(cell_extents) <= 13 and sizes.sum() > 0
    # object labels: cells marked 1, streaks 2
    assert np.all(s.truth[s.object_labels == 1] == 1)
    assert np.all(s.truth[s.object_labels == 2] == 2)


def test_too_small_shape():
    with pytest.raises(ValueError, match="too small"):
        make_section(0, (50, 50))


@pytest.mark.parametrize(("kind", "sub", "n"), [("dab", "", 3), ("fluorescence", "fluorescence", 2)])
def test_bundled_sample_data_is_current(tmp_path, kind, sub, n):
    """The committed sample_data/ (DAB) and sample_data/fluorescence/ are exactly what the
    generator writes."""
    from pathlib import Path

    bundled = Path(__file__).resolve().parents[1] / "sample_data" / sub
    write_rgb_sample_dataset(tmp_path, kind, n_sections=n, seed=0)
    for folder in ("sections", "labels", "object_labels", "truth"):
        names = sorted(p.name for p in (bundled / folder).glob("*.png"))
        assert names == [f"brain_s{i:03d}.png" for i in range(1, n + 1)]
        for name in names:
            np.testing.assert_array_equal(read_image(bundled / folder / name)[0],
                                          read_image(tmp_path / folder / name)[0])


def test_cli_sample(tmp_path):
    result = CliRunner().invoke(main, ["data", "sample", "--kind", "grey", "-o", str(tmp_path / "d"), "-n", "2",
                                       "--seed", "5"])
    assert result.exit_code == 0, result.output
    img, axes = read_image(tmp_path / "d" / "sections" / "brain_s002.png")
    np.testing.assert_array_equal(img[..., 0], make_section(6).image)
