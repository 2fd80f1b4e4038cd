"""ilastik project interop: read ``.ilp`` projects, evaluate their stored forests, write
minimal projects, and run ilastik-style headless batch prediction without ilastik.

>>> from pyquint.ilastik import read_project                      # doctest: +SKIP
>>> project = read_project("pc.ilp")                               # doctest: +SKIP
>>> project.label_names, len(project.label_blocks)                 # doctest: +SKIP
(['Label 1', 'Label 2'], 5)
"""

from ._labels import LabelBlock
from ._selection import load_feature_selection, read_feature_selection, selection_from_ilp
from .classifier import classifier_from_project
from .headless import ProjectPredictor, default_rounding, predict_project
from .project import IlastikProject, Lane, open_readonly, read_project
from .vigra_forest import decode_tree, read_forests, read_project_forest
from .writer import copy_labels, write_project

__all__ = [
    "IlastikProject",
    "LabelBlock",
    "Lane",
    "ProjectPredictor",
    "classifier_from_project",
    "copy_labels",
    "decode_tree",
    "default_rounding",
    "load_feature_selection",
    "open_readonly",
    "predict_project",
    "read_feature_selection",
    "read_forests",
    "read_project",
    "read_project_forest",
    "selection_from_ilp",
    "write_project",
]
