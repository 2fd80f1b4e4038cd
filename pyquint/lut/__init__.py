"""ImageJ lookup tables: every LUT file format, pyquint's Glasbey palettes, palette PNGs
identical to ImageJ's, and Nutil-ready colour tables, legends and name checks.

>>> from pyquint.lut import load_lut, write_palette_png
>>> lut = load_lut("glasbey")                    # Fiji's luts/, else pyquint's lut/
>>> lut.color(2)
(255, 0, 0)
"""

from .apply import (
    LabelConversionWarning,
    apply_lut,
    as_labels,
    lut_ramp,
    palette_image,
    read_labels,
    write_palette_png,
    write_rgb_png,
)
from .batch import ApplyResult, apply_files, lut_with_overrides, parse_color_set
from .formats import MAX_LUT_BYTES, Lut, interpolate_colors, lut_from_bytes, read_lut, write_lut
from .glasbey import (
    GLASBEY_VARIANTS,
    cam02ucs_from_srgb,
    farthest_point_palette,
    glasbey_lut,
    glasbey_palette,
    lab_d50_from_srgb,
    median_cut_palette,
)
from .library import BUILTIN_LUTS, PYQUINT_LUT_DIR, builtin_lut, fiji_lut_dirs, find_lut, load_lut
from .nutil import (
    check_nutil_names,
    colour_table,
    legend_image,
    nutil_name,
    section_id,
    write_colour_table,
)

__all__ = [
    "ApplyResult",
    "BUILTIN_LUTS",
    "GLASBEY_VARIANTS",
    "MAX_LUT_BYTES",
    "PYQUINT_LUT_DIR",
    "LabelConversionWarning",
    "Lut",
    "apply_files",
    "apply_lut",
    "as_labels",
    "builtin_lut",
    "cam02ucs_from_srgb",
    "check_nutil_names",
    "nutil_name",
    "colour_table",
    "farthest_point_palette",
    "fiji_lut_dirs",
    "find_lut",
    "glasbey_lut",
    "glasbey_palette",
    "interpolate_colors",
    "lab_d50_from_srgb",
    "legend_image",
    "load_lut",
    "lut_from_bytes",
    "lut_ramp",
    "lut_with_overrides",
    "median_cut_palette",
    "palette_image",
    "parse_color_set",
    "read_labels",
    "read_lut",
    "section_id",
    "write_colour_table",
    "write_lut",
    "write_palette_png",
    "write_rgb_png",
]
