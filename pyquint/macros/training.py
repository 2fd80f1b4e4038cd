"""The Fiji training loop macro (``fiji-train``): ROIs → pyquint trains → overlays → suggestions.

One run of the macro is one iteration of ilastik's "live update" loop, on the active image:

1. the ROIs of the ROI Manager named by class (freehand, rectangles, lines, points) are painted
   into a label image (``roi-labels`` rules; "label here next" ROIs are skipped);
2. ``pyquint interactive step`` (through ``exec()``) adds them to the labels saved in
   ``<image>_pyquint/labels.png``, trains (fast trainer), saves ``model.h5`` there and
   writes the probability, Glasbey segmentation, uncertainty and suggestions;
3. the segmentation becomes an overlay of the image, a 4-slice stack "pyquint preview"
   (image with overlay, probability, segmentation, uncertainty) is shown beside it, and the
   N most uncertain regions are added to the ROI Manager as "label here next k" (the ROI set
   is saved as ``<image>_pyquint/rois.zip``).

With ``batchDir`` set, the same macro instead classifies every image of that folder with the
saved model (``pyquint quint run --model``: Glasbey palette PNGs for Nutil in ``outDir``).
"""

from __future__ import annotations

from ._render import MacroSpec, Param
from .library import ROI_FUNCTIONS

_TRAIN_BODY = r"""
setBatchMode(true);
classList = split(classes, ",");
for (c = 0; c < classList.length; c++) classList[c] = String.trim(classList[c]);
if (classList.length < 2 || classList.length > 255) exit("pyquint: give 2 to 255 class names in 'classes', not '" + classes + "'");
workDir = "";
if (nImages > 0) {
	imageDir = getInfo("image.directory");
	imageFile = getInfo("image.filename");
	if (imageDir != "" && imageFile != "") workDir = "" + pyquintDir(imageDir) + pyquintStem(imageFile) + "_pyquint" + File.separator;
}
if (batchDir != "") {
	// ---- batch: the saved model over a folder
	batchDir = pyquintInputDir(batchDir);
	if (model == "") model = workDir + "model.h5";
	if (model == "model.h5" || !File.exists(model)) exit("pyquint: no model '" + model + "': train first (run this macro on an image with batchDir empty), or give 'model'");
	if (outDir == "") outDir = substring(batchDir, 0, lengthOf(batchDir) - 1) + "_pyquint";
	outDir = pyquintOutputDir(outDir, batchDir);
	print("pyquint: classifying " + batchDir + " with " + model);
	pyquintExec(python, "quint run", "--lut glasbey --no-objects", "--sections=" + batchDir, "--model=" + model, "--out=" + outDir, "");
	print("pyquint: Glasbey segmentations for Nutil in " + outDir + "segmentations");
	exit();
}
// ---- one training iteration on the active image
if (nImages == 0) exit("pyquint: open the image to train on, add ROIs named by class (" + classes + ") to the ROI Manager, then run this macro");
if (workDir == "") exit("pyquint: save the image first (File > Save As > Tiff...): pyquint reads it from disk");
if (bitDepth() != 24 && nSlices > 1) exit("pyquint: the training loop works on 2-D images, not stacks (" + nSlices + " slices)");
original = getImageID();
title = getTitle();
width = getWidth();
height = getHeight();
imagePath = "" + pyquintDir(getInfo("image.directory")) + getInfo("image.filename");
File.makeDirectory(workDir);
if (!File.isDirectory(workDir)) exit("pyquint: cannot create " + workDir);
newLabels = "";
if (roiManager("count") > 0) {
	newLabels = workDir + "new_labels.png";
	pyquintRoiLabels(width, height, classList, newLabels, title);
} else if (!File.exists(workDir + "labels.png")) {
	exit("pyquint: the ROI Manager is empty; draw ROIs and name them by class (" + classes + ", e.g. 'cell-1')");
}
print("pyquint: training on " + title + " (labels so far are kept in " + workDir + "labels.png)");
pyquintExec(python, "interactive step", "", imagePath, newLabels, "--class-names=" + classes, "--show-class=" + showClass + "|--suggestions=" + suggestions + "|--trees=" + trees);

// Suggestions replace those of the previous run.
for (r = roiManager("count") - 1; r >= 0; r--) {
	roiManager("select", r);
	if (startsWith(Roi.getName, "label here next")) roiManager("delete");
}
rows = split(File.openAsString(workDir + "suggestions.csv"), "\n");
selectImage(original);
run("Remove Overlay");
open(workDir + "segmentation.png");
segTitle = getTitle();
selectImage(original);
run("Add Image...", "image=[" + segTitle + "] x=0 y=0 opacity=" + opacity);
added = 0;
for (i = 1; i < rows.length; i++) {
	f = split(rows[i], ",");
	if (f.length < 5) continue;
	makeRectangle(parseInt(f[1]), parseInt(f[2]), parseInt(f[3]), parseInt(f[4]));
	Overlay.addSelection("yellow", 2);
	roiManager("add");
	roiManager("select", roiManager("count") - 1);
	roiManager("rename", f[0]);
	added++;
}
selectImage(original);
run("Select None");

// The preview stack: image with overlay, probability, segmentation, uncertainty.
run("Flatten");
flat = getImageID();
saveAs("PNG", workDir + "overlay.png");
newImage("pyquint preview", "RGB black", width, height, 4);
preview = getImageID();
pyquintPasteSlice(flat, preview, 1, "image + segmentation");
open(workDir + "probability.png");
run("Fire");
pyquintPasteSlice(getImageID(), preview, 2, "probability of " + pyquintShown(showClass, classList));
selectImage(segTitle);
pyquintPasteSlice(getImageID(), preview, 3, "segmentation (Glasbey)");
open(workDir + "uncertainty.png");
run("Fire");
pyquintPasteSlice(getImageID(), preview, 4, "uncertainty");
selectImage(preview);
// a small montage (at most 1600 pixels wide) for a quick look or a report
montageScale = minOf(1, 1600 / (4 * width));
run("Make Montage...", "columns=4 rows=1 scale=" + montageScale + " border=4 font=12 label");
saveAs("PNG", workDir + "preview_montage.png");
close();
selectImage(preview);
setSlice(1);
// the ROIs (class ROIs and suggestions) beside the model, to reopen in a later session
roiManager("save", workDir + "rois.zip");
print("pyquint: " + added + " 'label here next' suggestions added to the ROI Manager; overlay and preview stack shown");
print("pyquint: add ROIs where it is wrong or unsure and run again; model: " + workDir + "model.h5");
setBatchMode("exit and display");

function pyquintExec(python, command, options, a, b, c, more) {
	// run pyquint through run_cli (it appends "[pyquint exit status N]"); stop on failure.
	// 'more' holds further --option=value arguments separated by |
	extra = split(more, "|");
	e1 = ""; e2 = ""; e3 = "";
	if (extra.length > 0) e1 = extra[0];
	if (extra.length > 1) e2 = extra[1];
	if (extra.length > 2) e3 = extra[2];
	output = exec(python, "-m", "pyquint.macros.run_cli", command, options, a, b, c, e1, e2, e3);
	print(output);
	k = lastIndexOf(output, "[pyquint exit status ");
	if (k < 0) exit("pyquint: could not run pyquint with '" + python + "' (a Python with pyquint installed is needed): " + String.trim(output));
	status = String.trim(substring(output, k));
	if (!startsWith(status, "[pyquint exit status 0]")) exit("pyquint " + command + " failed: " + status);
}
function pyquintPasteSlice(source, stack, slice, label) {
	selectImage(source);
	if (bitDepth() != 24) run("RGB Color");
	run("Select All");
	run("Copy");
	selectImage(stack);
	setSlice(slice);
	run("Paste");
	setMetadata("Label", label);
	run("Select None");
	selectImage(source);
	close();
}
function pyquintShown(showClass, classList) {
	if (showClass == "") return classList[classList.length - 1];
	return showClass;
}
"""


def _train_body(values: dict) -> str:
    return _TRAIN_BODY + ROI_FUNCTIONS


FIJI_TRAIN = MacroSpec(
    "fiji-train",
    "Train pyquint from ROIs and preview it on the image (ilastik's live-update loop)",
    "On the active (saved) image: ROIs in the ROI Manager named by class -> labels -> pyquint\n"
    "trains (fast trainer) and saves <image>_pyquint/model.h5 with the labels it used (the next\n"
    "run adds to them) -> the Glasbey segmentation as an overlay, a preview stack (probability\n"
    "of showClass, segmentation, uncertainty) and the most uncertain regions added to the ROI\n"
    "Manager as 'label here next k'. With batchDir: the saved model over a folder instead.",
    (Param("classes", "str", "background,cell", "Classes", "comma-separated class names, in label order 1, 2, ..."),
     Param("showClass", "str", "", "Class to show", "class whose probability is shown (default: the last)"),
     Param("suggestions", "int", 5, "Suggestions", "how many 'label here next' regions to add", minimum=0, maximum=100),
     Param("trees", "int", 100, "Trees", "trees of the forest", minimum=1, maximum=1000),
     Param("opacity", "int", 40, "Overlay opacity", "opacity of the segmentation overlay, percent", minimum=0, maximum=100),
     Param("python", "str", "python3", "Python", "Python executable that has pyquint installed"),
     Param("batchDir", "dir", "", "Batch folder (optional)", "classify every image here with the model instead of training"),
     Param("model", "file", "", "Model (optional)", "model for the batch (default: the active image's)"),
     Param("outDir", "dir", "", "Batch output folder (optional)", "default: <batchDir>_pyquint")),
    _train_body,
    {"classes": "background,cell", "python": "/usr/bin/python3"},
)
