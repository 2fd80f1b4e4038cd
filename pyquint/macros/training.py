"""The Fiji training loop macro (``fiji-train``): ROIs → pyquint trains → overlays → suggestions.

One run of the macro is one iteration of ilastik's "live update" loop, on the active image:

1. the ROIs of the ROI Manager named by class (freehand, rectangles, lines, points) are painted
   into a label image (``roi-labels`` rules; "label here next" ROIs are skipped);
2. pyquint adds them to the labels saved in ``<image>_pyquint/labels.png``, trains (fast
   trainer), saves ``model.h5`` there and writes the probability, Glasbey segmentation,
   uncertainty and suggestions. With ``serverMinutes`` > 0 (default) the first run starts a
   pyquint server for the image in the background (``pyquint interactive serve --detach``,
   :mod:`pyquint.interactive_server`) and every run sends it a request file and waits for the
   answer file (``timeout``); it keeps the features and compiled code, so later runs skip
   Python's start and the feature computation. When no server answers (it could not start,
   it stopped, or it timed out: then it is stopped) the macro runs ``pyquint interactive
   step`` once through ``exec()``, which writes the same files;
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
tStart = getTime();
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
tLabels = getTime();
served = false;
if (serverMinutes > 0) served = pyquintServed(python, workDir, imagePath, newLabels, classes, showClass, suggestions, trees, serverMinutes, timeout);
if (!served) pyquintExec(python, "interactive step", "", imagePath, newLabels, "--class-names=" + classes, "--show-class=" + showClass + "|--suggestions=" + suggestions + "|--trees=" + trees);
tPyquint = getTime();

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

// The preview stack: image with overlay, probability, segmentation, uncertainty (the one of
// the previous run is replaced).
if (isOpen("pyquint preview")) {
	selectImage("pyquint preview");
	close();
}
selectImage(original);
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
tEnd = getTime();
print("pyquint: iteration " + d2s(tEnd - tStart, 0) + " ms (ROIs to labels " + d2s(tLabels - tStart, 0) + ", pyquint " + d2s(tPyquint - tLabels, 0) + pyquintVia(served) + ", overlays and preview " + d2s(tEnd - tPyquint, 0) + ")");
setBatchMode("exit and display");
// the next run works on the image, not on the preview stack (image ids change on display)
if (isOpen(title)) selectImage(title);

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
function pyquintServed(python, workDir, imagePath, labels, classes, showClass, suggestions, trees, minutes, timeout) {
	// One iteration through the pyquint server of workDir (the first run starts it in the
	// background; it keeps the features and compiled code): request.txt in, answer.txt out.
	// False when no server answers: the caller then runs pyquint once.
	beat = workDir + "server.json";
	if (!pyquintAlive(beat)) {
		output = exec(python, "-m", "pyquint.macros.run_cli", "interactive serve", "--detach", imagePath, "--work-dir=" + workDir, "--idle-timeout=" + d2s(60 * minutes, 0));
		if (indexOf(output, "[pyquint exit status 0]") < 0) {
			print("pyquint: no server (" + String.trim(output) + "); running pyquint once instead");
			return false;
		}
	}
	id = d2s(getTime(), 0) + "-" + d2s(floor(random * 1000000), 0);
	answer = workDir + "answer.txt";
	if (File.exists(answer)) deleted = File.delete(answer);
	request = "id=" + id + "\nimage=" + imagePath + "\nlabels=" + labels + "\nclass_names=" + classes;
	request = request + "\nshow_class=" + showClass + "\nsuggestions=" + suggestions + "\ntrees=" + trees + "\n";
	part = workDir + ".request.txt.part";
	File.saveString(request, part);
	if (!File.rename(part, workDir + "request.txt")) {
		print("pyquint: could not write " + workDir + "request.txt; running pyquint once instead");
		return false;
	}
	start = getTime();
	text = "";
	while (text == "") {
		if (File.exists(answer)) {
			text = File.openAsString(answer);
			if (!startsWith(text, "id=" + id + "\n")) text = "";
		}
		if (text == "") {
			if (!pyquintAlive(beat)) {
				print("pyquint: the server of " + workDir + " stopped before answering (see its server.log); running pyquint once instead");
				return false;
			}
			if (getTime() - start > 1000 * timeout) {
				print("pyquint: the pyquint server did not answer within " + timeout + " s (see " + workDir + "server.log); stopping it and running pyquint once instead");
				print(exec(python, "-m", "pyquint.macros.run_cli", "interactive stop", "", workDir));
				return false;
			}
			wait(10);
		}
	}
	status = "";
	message = "";
	lines = split(text, "\n");
	for (i = 0; i < lines.length; i++) {
		if (startsWith(lines[i], "status=")) status = substring(lines[i], 7);
		if (startsWith(lines[i], "message=")) message = substring(lines[i], 8);
	}
	if (status != "0") exit("pyquint interactive step failed: " + message);
	print("pyquint (server): " + message);
	return true;
}
function pyquintAlive(path) {
	// a server's heartbeat: server.json touched within the last 5 s
	if (!File.exists(path)) return false;
	if (getTime() - parseFloat("" + File.lastModified(path)) < 5000) return true;
	return false;
}
function pyquintVia(served) {
	if (served) return " via its server";
	return " as one process";
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
     Param("outDir", "dir", "", "Batch output folder (optional)", "default: <batchDir>_pyquint"),
     Param("serverMinutes", "int", 10, "Server idle minutes",
           "keep pyquint running for this image between runs (faster), until idle this long; 0: one process per run",
           minimum=0, maximum=1440),
     Param("timeout", "int", 120, "Timeout (s)", "seconds to wait for the server's answer", minimum=1, maximum=3600)),
    _train_body,
    {"classes": "background,cell", "python": "/usr/bin/python3"},
)
