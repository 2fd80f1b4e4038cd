"""The macros pyquint generates: parameters and bodies (IJ1 macro language)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from ..lut import load_lut
from ._render import MacroSpec, Param

GLASBEY_NAMES = ("glasbey", "glasbey on dark", "glasbey inverted")

IN_DIR = Param("inDir", "dir", "", "Input folder", "folder of input images", required=True)
OUT_DIR = Param("outDir", "dir", "", "Output folder", "folder for the results (created; must differ from inDir)", required=True)
LABEL_SUFFIXES = Param("suffixes", "str", ".png,.tif,.tiff", "File endings", "comma-separated endings of the files to process")
OVERWRITE = Param("overwrite", "bool", False, "Overwrite existing outputs",
                  "replace outputs that exist (default: skip them, so a stopped batch resumes)")

_LUT_LOOP = """
setBatchMode(true);
inDir = pyquintInputDir(inDir);
outDir = pyquintOutputDir(outDir, inDir);
{precheck}
files = getFileList(inDir);
written = 0;
skipped = 0;
for (i = 0; i < files.length; i++) {{
	name = files[i];
	if (!pyquintWanted(name, suffixes)) continue;
	outPath = outDir + pyquintStem(name) + ".png";
	if (File.exists(outPath) && !overwrite) {{
		skipped++;
		continue;
	}}
	open(inDir + name);
	pyquintLabels8(name);
	{apply}
	pyquintSave("PNG", outPath);
	close();
	written++;
}}
if (written + skipped == 0) exit("pyquint: no files ending with " + suffixes + " in " + inDir);
print("pyquint: " + written + " written, " + skipped + " skipped (already there; overwrite=false) in " + outDir);
"""


_GLASBEY_PRECHECK = r"""
// run(lut) finds <ImageJ>/luts/<lut>.lut (spaces or underscores). Without that file (plain
// ij.jar run as `java -jar ij.jar -batch`), run() would open a modal "Unrecognized command"
// dialog and -batch would wait for ever: use the table embedded below instead (pyquint's own
// Glasbey tables; pyquint's "glasbey" is Fiji's with entries 145/146 and 169/170 exchanged).
{arrays}
lutFile = getDirectory("luts") + replace(lut, " ", "_") + ".lut";
useLutFile = File.exists(lutFile);
if (!useLutFile) useLutFile = File.exists(getDirectory("luts") + lut + ".lut");
if (!useLutFile) {{
	lutNames = newArray({names});
	k = -1;
	for (j = 0; j < lutNames.length; j++)
		if (toLowerCase(replace(lut, "_", " ")) == lutNames[j]) k = j;
	if (k < 0) exit("pyquint: Unrecognized command: \"" + lut + "\": no " + lutFile + " and no table of that name in this macro (" + String.join(lutNames, ", ") + "); use lut-batch with a LUT file");
	lutReds = Array.slice(pyquintGlasbeyReds, 256 * k, 256 * k + 256);
	lutGreens = Array.slice(pyquintGlasbeyGreens, 256 * k, 256 * k + 256);
	lutBlues = Array.slice(pyquintGlasbeyBlues, 256 * k, 256 * k + 256);
	print("pyquint: no " + lutFile + ": using pyquint's " + lut + " table embedded in this macro");
}}
"""


def _glasbey_body(values: dict) -> str:
    tables = [load_table(name) for name in GLASBEY_NAMES]
    arrays = "\n".join(
        _array_lines(f"pyquintGlasbey{colour}", np.concatenate([t[:, c] for t in tables]))
        for c, colour in enumerate(("Reds", "Greens", "Blues"))
    )
    names = ", ".join(f'"{n}"' for n in GLASBEY_NAMES)
    precheck = _GLASBEY_PRECHECK.format(arrays=arrays, names=names).strip("\n")
    return _LUT_LOOP.format(precheck=precheck,
                            apply="if (useLutFile) run(lut);\n\telse setLut(lutReds, lutGreens, lutBlues);")


def _lut_file_body(values: dict) -> str:
    precheck = (
        'if (lutFile == "" || !File.exists(lutFile)) exit("pyquint: LUT file not found: " + lutFile);'
    )
    # open(<file>.lut) with an image active applies the LUT (as in the QUINT docs' batch).
    return _LUT_LOOP.format(precheck=precheck, apply="open(lutFile);")


def load_table(lut: object) -> np.ndarray:
    """(256, 3) uint8 table of a LUT name or file (read with :func:`pyquint.lut.load_lut`)."""
    if hasattr(lut, "table"):
        return np.asarray(lut.table, dtype=np.uint8)
    if isinstance(lut, np.ndarray):
        table = lut
    else:
        table = np.asarray(load_lut(os.fspath(lut)).table)  # type: ignore[arg-type]
    if table.shape != (256, 3):
        raise InputError(f"{lut}: a LUT table has shape (256, 3), not {table.shape}")
    return np.asarray(table, dtype=np.uint8)


def _array_lines(name: str, values: np.ndarray) -> str:
    rows = [", ".join(str(int(v)) for v in values[i:i + 16]) for i in range(0, len(values), 16)]
    return f"{name} = newArray(\n\t" + ",\n\t".join(rows) + ");"


def _lut_inline_body(values: dict) -> str:
    table = load_table(values["lut"])
    precheck = "\n".join([
        f"// LUT embedded at generation time (--lut {values['lut']}): no LUT file is needed.",
        _array_lines("pyquintReds", table[:, 0]),
        _array_lines("pyquintGreens", table[:, 1]),
        _array_lines("pyquintBlues", table[:, 2]),
    ])
    return _LUT_LOOP.format(precheck=precheck, apply="setLut(pyquintReds, pyquintGreens, pyquintBlues);")


def _downscale_body(values: dict) -> str:
    return """
setBatchMode(true);
inDir = pyquintInputDir(inDir);
outDir = pyquintOutputDir(outDir, inDir);
if (factor <= 0 || factor > 1) exit("pyquint: factor must be in (0, 1], not " + factor);
extension = ".png";
if (format == "TIFF") extension = ".tif";
files = getFileList(inDir);
written = 0;
skipped = 0;
for (i = 0; i < files.length; i++) {
	name = files[i];
	if (!pyquintWanted(name, suffixes)) continue;
	outPath = outDir + pyquintStem(name) + extension;
	if (File.exists(outPath) && !overwrite) {
		skipped++;
		continue;
	}
	open(inDir + name);
	// round() as ImageJ's macro language does it (half up); never below one pixel.
	newWidth = maxOf(1, round(getWidth() * factor));
	newHeight = maxOf(1, round(getHeight() * factor));
	print(name + ": " + getWidth() + "x" + getHeight() + " -> " + newWidth + "x" + newHeight);
	options = "width=" + newWidth + " height=" + newHeight + " depth=" + nSlices + " interpolation=" + interpolation;
	if (average) options = options + " average";
	run("Size...", options);
	pyquintSave(format, outPath);
	close();
	written++;
}
if (written + skipped == 0) exit("pyquint: no files ending with " + suffixes + " in " + inDir);
print("pyquint: " + written + " written, " + skipped + " skipped (already there; overwrite=false) in " + outDir);
"""


def _classify_body(values: dict) -> str:
    return """
// ImageJ's exec() returns the program's output only; pyquint.macros.run_cli adds a status line.
if (model != "" && !File.exists(model)) exit("pyquint: model file not found: " + model);
if (inDir != "" && !File.exists(inDir)) exit("pyquint: input not found: " + inDir);
overwriteFlag = "";
if (overwrite) overwriteFlag = "--overwrite";
outOption = "";
if (outDir != "") outOption = "--output-dir=" + outDir;
print("pyquint: running '" + command + "' with " + python);
output = exec(python, "-m", "pyquint.macros.run_cli", command, options, model, inDir, outOption, overwriteFlag);
print(output);
k = lastIndexOf(output, "[pyquint exit status ");
if (k < 0) exit("pyquint: could not run pyquint with '" + python + "' (a Python with pyquint installed is needed): " + String.trim(output));
status = String.trim(substring(output, k));
if (!startsWith(status, "[pyquint exit status 0]")) exit("pyquint " + command + " failed: " + status);
"""


ROI_FUNCTIONS = """
function pyquintRoiLabels(width, height, classList, outPath, source) {
	// Label k+1 for ROIs of class k (in list order); later ROIs paint over earlier ones.
	newImage("pyquint-labels", "8-bit black", width, height, 1);
	n = roiManager("count");
	for (r = 0; r < n; r++) {
		roiManager("select", r);
		roiName = Roi.getName;
		// the training loop's "label here next" suggestions are no labels
		if (startsWith(toLowerCase(roiName), "label here next")) continue;
		label = pyquintClassOf(roiName, classList);
		if (label == 0) exit("pyquint: ROI '" + roiName + "' of " + source + " matches none of the classes " + String.join(classList, ", ") + " (name ROIs by class, e.g. 'cell' or 'cell-2')");
		type = selectionType();
		if (type == 10) {
			getSelectionCoordinates(xs, ys);
			for (p = 0; p < xs.length; p++) setPixel(floor(xs[p]), floor(ys[p]), label);
		} else {
			if (type >= 5 && type <= 7) run("Line to Area");
			setColor(label);
			fill();
		}
	}
	run("Select None");
	pyquintSave("PNG", outPath);
	close();
}
function pyquintClassOf(name, classList) {
	// Exact class name first, then a class name followed by - _ space : or . (e.g. "cell-3").
	lower = toLowerCase(String.trim(name));
	for (c = 0; c < classList.length; c++)
		if (lower == toLowerCase(classList[c])) return c + 1;
	for (c = 0; c < classList.length; c++) {
		cls = toLowerCase(classList[c]);
		if (startsWith(lower, cls) && lengthOf(lower) > lengthOf(cls)) {
			next = substring(lower, lengthOf(cls), lengthOf(cls) + 1);
			if (next == "-" || next == "_" || next == " " || next == ":" || next == ".") return c + 1;
		}
	}
	return 0;
}
"""


def _roi_labels_body(values: dict) -> str:
    return """
setBatchMode(true);
classList = split(classes, ",");
for (c = 0; c < classList.length; c++) classList[c] = String.trim(classList[c]);
if (classList.length == 0 || classList.length > 255) exit("pyquint: give 1 to 255 class names in 'classes', not '" + classes + "'");
outDir = pyquintOutputDir(outDir, "");
if (inDir == "") {
	// The active image and the ROIs now in the ROI Manager.
	if (nImages == 0) exit("pyquint: no image is open and no input folder (inDir) was given");
	if (roiManager("count") == 0) exit("pyquint: the ROI Manager is empty; add ROIs named by class (" + String.join(classList, ", ") + ")");
	title = getTitle();
	pyquintRoiLabels(getWidth(), getHeight(), classList, outDir + pyquintStem(title) + suffix + ".png", title);
	print("pyquint: 1 label image written in " + outDir);
} else {
	inDir = pyquintInputDir(inDir);
	if (roiDir == "") roiDir = inDir;
	else roiDir = pyquintInputDir(roiDir);
	files = getFileList(inDir);
	written = 0;
	skipped = 0;
	for (i = 0; i < files.length; i++) {
		name = files[i];
		if (!pyquintWanted(name, suffixes)) continue;
		stem = pyquintStem(name);
		roiPath = roiDir + stem + ".zip";
		if (!File.exists(roiPath)) roiPath = roiDir + stem + ".roi";
		if (!File.exists(roiPath)) {
			print("pyquint: no ROI set " + stem + ".zip or " + stem + ".roi for " + name + ", skipped");
			continue;
		}
		outPath = outDir + stem + suffix + ".png";
		if (File.exists(outPath) && !overwrite) {
			skipped++;
			continue;
		}
		open(inDir + name);
		width = getWidth();
		height = getHeight();
		close();
		roiManager("reset");
		roiManager("open", roiPath);
		pyquintRoiLabels(width, height, classList, outPath, name);
		written++;
	}
	if (written + skipped == 0) exit("pyquint: no images with ROI sets (<name>.zip or <name>.roi) in " + inDir);
	print("pyquint: " + written + " label images written, " + skipped + " skipped (already there) in " + outDir);
}

""" + ROI_FUNCTIONS


SPECS = (
    MacroSpec(
        "glasbey-batch",
        "Glasbey LUT over a folder of label images (QUINT's run(\"Glasbey\") batch)",
        "Opens every label image (ilastik/pyquint Simple Segmentation, values 1..N) in inDir,\n"
        "applies a Glasbey LUT from ImageJ's luts folder and saves an indexed (palette) PNG\n"
        "in outDir for Nutil. Labels stay unchanged; 16-bit labels are converted without scaling.\n"
        "Without luts/<lut>.lut (plain ij.jar), pyquint's own table embedded here is used.",
        (IN_DIR, OUT_DIR,
         Param("lut", "choice", "glasbey", "LUT", "LUT name in ImageJ's luts folder", choices=GLASBEY_NAMES),
         LABEL_SUFFIXES, OVERWRITE),
        _glasbey_body,
        {"inDir": "/data/seg", "outDir": "/data/nutil", "lut": "glasbey"},
    ),
    MacroSpec(
        "lut-batch",
        "Custom LUT file over a folder of label images",
        "Like glasbey-batch, with a LUT file given by path (any format ImageJ reads:\n"
        "raw 768 bytes, NIH Image, text tables).",
        (IN_DIR, OUT_DIR,
         Param("lutFile", "file", "", "LUT file", "the .lut file to apply", required=True),
         LABEL_SUFFIXES, OVERWRITE),
        _lut_file_body,
        {"inDir": "/data/seg", "outDir": "/data/nutil", "lutFile": "/data/custom.lut"},
    ),
    MacroSpec(
        "lut-inline-batch",
        "LUT embedded in the macro (setLut) over a folder of label images",
        "Like glasbey-batch, but the LUT table is written into this macro (setLut with three\n"
        "256-value arrays), so no LUT file has to be installed.",
        (IN_DIR, OUT_DIR, LABEL_SUFFIXES, OVERWRITE,
         Param("lut", "str", "glasbey", "LUT to embed", "pyquint LUT name or LUT file embedded at generation time",
               runtime=False)),
        _lut_inline_body,
        {"inDir": "/data/seg", "outDir": "/data/nutil"},
    ),
    MacroSpec(
        "downscale-batch",
        "Downscale a folder of images (QUINT: resize factor 0.1-0.2 before ilastik)",
        "Resizes every image in inDir by factor (new size = round(size * factor), at least 1)\n"
        "with ImageJ's Image>Adjust>Size and saves it in outDir. Use interpolation None for\n"
        "label images.",
        (IN_DIR, OUT_DIR,
         Param("factor", "float", 0.2, "Resize factor", "new size / old size, 0 < factor <= 1",
               minimum=0.001, maximum=1.0),
         Param("interpolation", "choice", "Bilinear", "Interpolation", "ImageJ interpolation",
               choices=("None", "Bilinear", "Bicubic")),
         Param("average", "bool", True, "Average when downsizing", "average pixels when downsizing (less aliasing)"),
         Param("format", "choice", "PNG", "Output format", "file format of the outputs", choices=("PNG", "TIFF")),
         Param("suffixes", "str", ".png,.tif,.tiff,.jpg,.jpeg", "File endings",
               "comma-separated endings of the files to process"),
         OVERWRITE),
        _downscale_body,
        {"inDir": "/data/sections", "outDir": "/data/small", "factor": "0.2"},
    ),
    MacroSpec(
        "pyquint-classify",
        "Run pyquint's pixel/object classification from ImageJ (exec of the pyquint CLI)",
        "Calls `python -m pyquint.macros.run_cli` through exec(): pyquint COMMAND MODEL inDir\n"
        "--output-dir outDir OPTIONS. Needs a Python with pyquint installed (give its full path\n"
        "in 'python' when Fiji is not started from that environment).",
        (Param("python", "str", "python3", "Python", "Python executable that has pyquint installed"),
         Param("command", "str", "pixel predict", "pyquint command", "pyquint sub-command, e.g. 'pixel predict' or 'objects predict'"),
         Param("model", "file", "", "Model file", "the trained pyquint model (.h5)"),
         Param("inDir", "dir", "", "Input folder", "images to classify"),
         Param("outDir", "dir", "", "Output folder", "folder for the results (--output-dir)"),
         Param("options", "str", '--export-source "Simple Segmentation" --output-format png', "Options",
               "further command-line options, quoted like in a shell"),
         OVERWRITE),
        _classify_body,
        {"python": "/usr/bin/python3", "model": "/data/model.h5", "inDir": "/data/small", "outDir": "/data/seg"},
    ),
    MacroSpec(
        "roi-labels",
        "ROI Manager annotations (ROIs named by class) to training label images",
        "Paints the ROIs of the ROI Manager into an 8-bit label image: a ROI named like class k\n"
        "of 'classes' (exactly, or followed by - _ space : . as in 'cell-2') gets label k (1-based);\n"
        "0 = unlabelled. Without inDir: the active image and its ROIs. With inDir: every image\n"
        "that has a ROI set <name>.zip or <name>.roi (in roiDir, default inDir).",
        (Param("classes", "str", "background,cell", "Classes", "comma-separated class names, in label order 1, 2, ..."),
         Param("inDir", "dir", "", "Image folder (optional)", "folder of images with ROI sets; empty: the active image"),
         Param("roiDir", "dir", "", "ROI folder (optional)", "folder of the ROI sets (default inDir)"),
         OUT_DIR,
         Param("suffix", "str", "_labels", "Name suffix", "added to the image name for the label image"),
         LABEL_SUFFIXES, OVERWRITE),
        _roi_labels_body,
        {"classes": "background,cell", "inDir": "/data/train", "outDir": "/data/labels"},
    ),
)
